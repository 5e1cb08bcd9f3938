package shard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Command versions (Command.V): the format and the meaning of a command, so
// that replicas running different code never apply one differently. The
// rules (docs/ARCHITECTURE.md, "Shard commands"):
//
//   - A version's behaviour never changes. Anything that changes what
//     Apply does with a command an older version could already express (a
//     new check, a different outcome, a new field that matters) bumps
//     Version, and Apply keeps the old behaviour for older versions
//     (a.v < VersionN tests). One bump per release is enough: changes
//     merged into the same release share it.
//   - A new op needs a version too: the core proposes it only when the
//     cluster runs that version (Config.CommandVersion), and a replica
//     that meets an op it does not know stops (ErrUnknownOp is fatal).
//   - A replica that meets a version newer than Version stops
//     (ErrUnknownVersion): an old binary never guesses at a new command.
//   - A command without "v" (every command proposed before versions
//     existed) is version 1.
//
// The proposer stamps the version into the command (Encode); a batch's
// entries take the batch's.
const (
	// Version1 is every command proposed before versions existed.
	Version1 = 1
	// Version2 caps a conversation's attributes: start and update are
	// refused (ErrAttrTooLarge) when the resulting attr is over
	// MaxAttrBytes.
	Version2 = 2
	// Version3 adds OpImport (import.go: conversations and history brought
	// over from LeanCloud with their ids and timestamps).
	Version3 = 3
	// Version4 lets one entry store several messages (group commit of
	// sends, core/sendgroup.go): the fan-out tail entries of a batch's
	// appends are kept together under the entry's raft index, in order
	// (fanout.go), where before each append overwrote the one before it.
	Version4 = 4
	// Version5 (bincmd.go) is the binary form of commands, which core
	// proposes; their meaning is Version4's.

	// Version6 stores messages in a binary form (msgcodec.go) instead of
	// JSON; both forms are read.
	Version6 = 6

	// Version7 keeps a send's dedup entry for a window of time (dedup.go:
	// 'd' keys by time bucket, deleted by range as the window moves)
	// instead of forever ('D' keys), so a resend is found within
	// DedupWindowMS of the original and maybe up to twice that; entries of
	// the earlier form are read for one more window, then deleted.
	Version7 = 7

	// Version is the newest version this code applies, and the one it
	// proposes unless configured lower (core.Config.CommandVersion).
	Version = Version7
)

// MaxAttrBytes bounds a conversation's attributes (the JSON object, custom
// attributes and name, as stored after a merge): 16 KiB, about three of
// LeanCloud's 5 KB client frames.
const MaxAttrBytes = 16 << 10

// ErrAttrTooLarge: the conversation's attributes would be over
// MaxAttrBytes (Version2 on).
var ErrAttrTooLarge = errors.New("shard: conversation attributes too large")

// version returns the command's version: V, or 1 when it has none.
func (c *Command) version() int {
	if c.V <= 0 {
		return Version1
	}
	return c.V
}

// checkVersion refuses (fatally) a command of a version this code does not
// know.
func checkVersion(index uint64, c *Command) *FatalError {
	if v := c.version(); v > Version {
		return &FatalError{Index: index, Op: c.Op,
			Err: fmt.Errorf("%w: version %d, this replica applies up to %d", ErrUnknownVersion, v, Version)}
	}
	return nil
}

// peekVersion reads the version of a command that does not decode: a
// newer command may not be JSON this code can read, and only a version
// this code knows makes the decode failure a refusal rather than fatal.
func peekVersion(b []byte) int {
	var v struct {
		V int `json:"v"`
	}
	if json.Unmarshal(b, &v) != nil {
		return 0
	}
	return v.V
}

// checkAttrSize refuses attributes over MaxAttrBytes, measured as stored
// (compact JSON), for Version2 commands on.
func (a *applier) checkAttrSize(attr []byte) *Error {
	if a.v < Version2 || len(attr) <= MaxAttrBytes {
		return nil
	}
	var buf bytes.Buffer
	if json.Compact(&buf, attr) == nil && buf.Len() <= MaxAttrBytes {
		return nil
	}
	return fail(ErrAttrTooLarge, fmt.Sprintf("%d bytes", len(attr)))
}

// opVersion is the first command version with each op added after
// Version1 (ops not listed exist in every version). A command of an older
// version naming one of these ops is refused with ErrBadCommand, exactly as
// a replica from before the op refuses an op it does not know, so a mixed
// cluster answers alike; the core never proposes one (NeedsVersion).
var opVersion = map[Op]int{
	OpDeviceSave: Version2, OpDeviceDelete: Version2, OpDeviceBind: Version2, OpDeviceUnbind: Version2,
	OpDeviceBadge:  Version2, // devices.go
	OpRevokeTokens: Version2, // auth.go
	OpNotif:        Version2, // notif.go
	OpFanoutDone:   Version2, // fanout.go
	OpImport:       Version3, // import.go
}

// NeedsVersion returns the command version c needs: that of its op,
// Version2 for a global or transient broadcast (global.go), which a
// Version1 replica would store as a subscribers' broadcast, and Version4
// for a batch of several appends, whose fan-out tail entries an older
// replica would write over each other.
func NeedsVersion(c *Command) int {
	v := max(opVersion[c.Op], Version1)
	if c.Op == OpSysBcast && (c.Global || c.Transient) {
		v = max(v, Version2)
	}
	appends := 0
	for _, sub := range c.Batch {
		v = max(v, NeedsVersion(sub))
		if sub != nil && sub.Op == OpAppend {
			appends++
		}
	}
	if appends > 1 {
		v = max(v, Version4)
	}
	return v
}

// ErrVersionTooOld: the core's configured command version is older than
// the operation needs (core.Config.CommandVersion, during an upgrade).
var ErrVersionTooOld = errors.New("shard: operation needs a newer command version")

// checkOpVersion refuses an op newer than the command's version.
func (a *applier) checkOpVersion() *Error {
	if need := opVersion[a.c.Op]; need > a.v {
		return fail(ErrBadCommand, fmt.Sprintf("unknown op %s", a.c.Op))
	}
	return nil
}
