package catalog

import (
	"errors"
	"fmt"
)

// Refusals: what Apply answers, the same on every replica, for a command
// the state or the bounds refuse (nothing is written then). Each comes
// back as an *Error wrapping one of these; callers classify them with
// errors.Is and map them to LeanCloud codes in their one table (for a
// client or the REST API: ErrInvalid, ErrTooLong and ErrTooMany are bad
// parameters, 4301 CONVERSATION_API_FAILED or REST 107/1; ErrNotFound is
// 4401 or REST 101; the others are server-side states).
var (
	// ErrBadCommand: the command does not decode, or names an op its
	// version does not have.
	ErrBadCommand = errors.New("catalog: malformed command")
	// ErrInvalid: an input has the wrong shape (characters, format, range).
	ErrInvalid = errors.New("catalog: invalid input")
	// ErrTooLong: a string or blob is over its bound.
	ErrTooLong = errors.New("catalog: input too long")
	// ErrTooMany: a list is over its bound, or the catalog holds as many of
	// something as it may.
	ErrTooMany = errors.New("catalog: too many")
	// ErrNotFound: the region, node or shard named does not exist.
	ErrNotFound = errors.New("catalog: not found")
	// ErrConflict: the command contradicts the state (an imported id
	// registered elsewhere, a shard number that is not the next).
	ErrConflict = errors.New("catalog: conflict")
	// ErrInUse: the region still has shards or nodes, or the node is a
	// shard's voter.
	ErrInUse = errors.New("catalog: in use")
)

// Error is a refusal; Err is one of the sentinels above.
type Error struct {
	Err    error
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

func fail(err error, format string, args ...any) *Error {
	return &Error{Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Fatal apply errors (see raftstore.FatalApplyError): an error only this
// replica can meet, a failing read or write of its state, stored data that
// does not decode, or a command version newer than its code. Answering it
// as a refusal would make this replica differ from its peers, so Apply
// returns a *FatalError and raftstore stops the replica.
var (
	// ErrStorage: reading or writing the state failed, or what was read
	// does not decode.
	ErrStorage = errors.New("catalog: storage failure")
	// ErrUnknownVersion: the command's version is newer than this code.
	ErrUnknownVersion = errors.New("catalog: command version unknown to this replica")
)

// FatalError is what Apply returns when this replica cannot apply the
// command as every other replica does; Err wraps ErrStorage or
// ErrUnknownVersion. It implements raftstore.FatalApplyError.
type FatalError struct {
	Index uint64 // raft index of the entry
	Op    Op     // the command's op, "" if it did not decode
	Err   error
}

func (e *FatalError) Error() string {
	return fmt.Sprintf("catalog: cannot apply entry %d (%s): %v", e.Index, e.Op, e.Err)
}

func (e *FatalError) Unwrap() error { return e.Err }

// FatalApply marks the error as fatal for raftstore.
func (*FatalError) FatalApply() {}

func errCorrupt(what string, key []byte) error {
	return fmt.Errorf("%w: malformed %s at key %q", ErrStorage, what, key)
}
