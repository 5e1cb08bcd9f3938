package shard

import (
	"errors"
	"fmt"
)

// Fatal apply errors. A refusal computed from the command and the state
// (not a member, conversation full, …) is the same on every replica and
// comes back as an *Error. An error only this replica can meet is not: a
// read or write of its Pebble state failing, stored data that does not
// decode, or a command newer than its code (an unknown Version or Op).
// Answering such a command with a refusal would make this replica refuse
// what its peers accept, so Apply returns it as a *FatalError, which
// raftstore treats as fatal (raftstore.FatalApplyError): the batch is
// discarded and the replica stops, to be restarted on fixed storage or a
// newer binary.
var (
	// ErrStorage: reading or writing the state failed, or what was read
	// does not decode.
	ErrStorage = errors.New("shard: storage failure")
	// ErrUnknownVersion: the command's version is newer than this code.
	ErrUnknownVersion = errors.New("shard: command version unknown to this replica")
	// ErrUnknownOp: the command's op is unknown to this code (it came from
	// a newer proposer).
	ErrUnknownOp = errors.New("shard: command op unknown to this replica")
)

// FatalError is what Apply returns when this replica cannot apply the
// command the way every other replica does; Err wraps ErrStorage,
// ErrUnknownVersion or ErrUnknownOp. It implements
// raftstore.FatalApplyError.
type FatalError struct {
	Index uint64 // raft index of the entry
	Op    Op     // the command's op, "" if it did not decode
	Err   error
}

func (e *FatalError) Error() string {
	return fmt.Sprintf("shard: cannot apply entry %d (%s): %v", e.Index, e.Op, e.Err)
}

func (e *FatalError) Unwrap() error { return e.Err }

// FatalApply marks the error as fatal for raftstore.
func (*FatalError) FatalApply() {}

// fatal builds the FatalError for err, classifying anything that is not a
// version or op problem as a storage failure.
func fatal(index uint64, op Op, err error) *FatalError {
	if !errors.Is(err, ErrUnknownVersion) && !errors.Is(err, ErrUnknownOp) && !errors.Is(err, ErrStorage) {
		err = fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return &FatalError{Index: index, Op: op, Err: err}
}

// errCorrupt builds a storage error for a stored value that does not
// decode.
func errCorrupt(what string, key []byte) error {
	return fmt.Errorf("%w: malformed %s at key %q", ErrStorage, what, key)
}
