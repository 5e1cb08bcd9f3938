package catalog

import (
	"encoding/json"
	"fmt"
)

// Commands of the catalog's raft log. An entry is the JSON envelope
//
//	{"v": version, "op": name, "a": arguments}
//
// where the arguments are the op's struct below (AddRegion, PutNode, …).
//
// Versions (Envelope.V) follow the shard's rules (core/shard, version.go):
// a version's behaviour never changes; anything that changes what Apply
// does, a new op included, bumps Version and older versions keep their
// behaviour. A replica that meets a version newer than its code stops
// (ErrUnknownVersion, fatal): an old binary never guesses at a new
// command. Since every op comes with a version, an op unknown within a
// version this code knows is unknown to every replica that can apply that
// version, so it is refused alike everywhere (ErrBadCommand) rather than
// fatal. A command without a version (0) is refused too: there were no
// catalog commands before versions.
const (
	// Version1: topology, member index, unique index, imported ids, apps.
	Version1 = 1
	// Version2: MemberSet (absolute member counts and a shard's mark).
	Version2 = 2

	// Version is the newest version this code applies and proposes.
	Version = Version2
)

// Op names a command.
type Op string

// The ops of Version1.
const (
	OpAddRegion      Op = "add_region"
	OpRemoveRegion   Op = "remove_region"
	OpPutNode        Op = "put_node"
	OpRemoveNode     Op = "remove_node"
	OpAddShard       Op = "add_shard"
	OpSetShardVoters Op = "set_shard_voters"
	OpSetShardOpen   Op = "set_shard_open"
	OpMemberDelta    Op = "member_delta"
	OpClaimUnique    Op = "claim_unique"
	OpReleaseUnique  Op = "release_unique"
	OpImportIDs      Op = "import_ids"
	OpPutApp         Op = "put_app"
	OpDeleteApp      Op = "delete_app"
)

// The ops of Version2.
const (
	OpMemberSet Op = "member_set"
)

// opVersion is the first version that has each op.
var opVersion = map[Op]int{
	OpAddRegion: Version1, OpRemoveRegion: Version1, OpPutNode: Version1, OpRemoveNode: Version1,
	OpAddShard: Version1, OpSetShardVoters: Version1, OpSetShardOpen: Version1,
	OpMemberDelta: Version1, OpClaimUnique: Version1, OpReleaseUnique: Version1,
	OpImportIDs: Version1, OpPutApp: Version1, OpDeleteApp: Version1,
	OpMemberSet: Version2,
}

// Command is implemented by the argument struct of every op.
type Command interface {
	Op() Op
}

// Envelope is a command as stored in the raft log.
type Envelope struct {
	V    int             `json:"v"`
	Op   Op              `json:"op"`
	Args json.RawMessage `json:"a,omitempty"`
}

// Encode returns the raft entry for cmd at the current Version.
func Encode(cmd Command) ([]byte, error) {
	return EncodeVersion(Version, cmd)
}

// EncodeVersion returns the raft entry for cmd at version v (during an
// upgrade, proposers stay at the version every replica runs).
func EncodeVersion(v int, cmd Command) ([]byte, error) {
	args, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("catalog: encode %s: %w", cmd.Op(), err)
	}
	b, err := json.Marshal(Envelope{V: v, Op: cmd.Op(), Args: args})
	if err != nil {
		return nil, fmt.Errorf("catalog: encode %s: %w", cmd.Op(), err)
	}
	return b, nil
}

// Decode parses a raft entry into its version and command. A version
// newer than this code is reported with the envelope's version so that
// Apply can make it fatal; any other failure wraps ErrBadCommand.
func Decode(b []byte) (int, Command, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return peekVersion(b), nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if e.V > Version {
		return e.V, nil, nil
	}
	if e.V < Version1 {
		return e.V, nil, fmt.Errorf("%w: version %d", ErrBadCommand, e.V)
	}
	if need, ok := opVersion[e.Op]; !ok || need > e.V {
		return e.V, nil, fmt.Errorf("%w: unknown op %q in version %d", ErrBadCommand, e.Op, e.V)
	}
	cmd := newCommand(e.Op)
	if len(e.Args) > 0 {
		if err := json.Unmarshal(e.Args, cmd); err != nil {
			return e.V, nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, e.Op, err)
		}
	}
	return e.V, cmd, nil
}

// peekVersion reads the version of an entry that does not decode as a
// whole: a newer command may not be JSON this code reads, and only a
// version this code knows makes the failure a refusal rather than fatal.
func peekVersion(b []byte) int {
	var v struct {
		V int `json:"v"`
	}
	if json.Unmarshal(b, &v) != nil {
		return 0
	}
	return v.V
}

func newCommand(op Op) Command {
	switch op {
	case OpAddRegion:
		return new(AddRegion)
	case OpRemoveRegion:
		return new(RemoveRegion)
	case OpPutNode:
		return new(PutNode)
	case OpRemoveNode:
		return new(RemoveNode)
	case OpAddShard:
		return new(AddShard)
	case OpSetShardVoters:
		return new(SetShardVoters)
	case OpSetShardOpen:
		return new(SetShardOpen)
	case OpMemberDelta:
		return new(MemberDelta)
	case OpClaimUnique:
		return new(ClaimUnique)
	case OpReleaseUnique:
		return new(ReleaseUnique)
	case OpImportIDs:
		return new(ImportIDs)
	case OpPutApp:
		return new(PutApp)
	case OpDeleteApp:
		return new(DeleteApp)
	case OpMemberSet:
		return new(MemberSet)
	}
	panic("catalog: newCommand: op without a struct: " + string(op))
}

// AddRegion adds a region, which gets the next region number (1..255, in
// join order, never reused). A region of that name already there keeps
// its number and is left as it is, unless Update is set: then its
// addresses are replaced by these.
type AddRegion struct {
	Name     string   `json:"name"`
	Seeds    []string `json:"seeds,omitempty"` // mesh addresses of seed nodes, host:port
	CIDRs    []string `json:"cidrs,omitempty"` // client networks served nearest by this region
	EdgeURLs []string `json:"edges,omitempty"` // public edge URLs
	Update   bool     `json:"update,omitempty"`
}

// RemoveRegion removes a region that has neither shards nor nodes. Its
// number is never given again.
type RemoveRegion struct {
	Name string `json:"name"`
}

// PutNode adds or replaces a node. A node that votes in a shard cannot
// move to another region. With IfAbsent, a node already there is left as
// it is.
type PutNode struct {
	Node     Node `json:"node"`
	IfAbsent bool `json:"if_absent,omitempty"`
}

// RemoveNode removes a node that votes in no shard.
type RemoveNode struct {
	ID string `json:"id"`
}

// AddShard adds a shard to a region, numbered the next free number within
// the region (0, 1, …; numbers are never reused). With Number set it is
// idempotent: if that shard exists it is left as it is, if Number is the
// next free one it is created, otherwise ErrConflict.
type AddShard struct {
	Region uint8    `json:"region"`
	Voters []string `json:"voters"` // node ids: cores of the region
	Open   bool     `json:"open,omitempty"`
	Number *uint16  `json:"number,omitempty"`
}

// SetShardVoters replaces a shard's voters (as recorded: the shard's raft
// group changes its membership itself).
type SetShardVoters struct {
	Shard  ShardRef `json:"shard"`
	Voters []string `json:"voters"`
}

// SetShardOpen opens a shard to, or closes it for, new conversations.
type SetShardOpen struct {
	Shard ShardRef `json:"shard"`
	Open  bool     `json:"open"`
}

// MemberDelta is a membership change a shard committed at raft index
// Index: Adds gained a conversation in the shard, Removes lost one (a
// clientId appears once per conversation; a batch entry may add one
// client to several). For each client, a delta whose Index is at or below
// the index of the last delta applied from that shard for that client is
// ignored, so a shard may resend deltas; it must send them in its raft
// index order (a resend of an applied suffix is harmless, a reordering can
// lose a change). A count never goes below 0, and an entry whose count
// reaches 0 is removed.
type MemberDelta struct {
	App     string   `json:"app"`
	Shard   ShardRef `json:"shard"`
	Index   uint64   `json:"index"`
	Adds    []string `json:"adds,omitempty"`
	Removes []string `json:"removes,omitempty"`
}

// MemberSet (Version2) sets, for each entry, how many conversations
// Client of App has in Shard as of the shard's raft index Index. An entry
// whose (client, shard) was last changed at or above Index is left (a
// MemberDelta or MemberSet of a later index won); a count of 0 removes the
// entry. Unlike MemberDelta it is absolute, so a shard's leader may send
// it in any order and again: it reads the counts from its state at Index.
//
// With Complete, the sender vouches that every membership change the
// shard committed at or below Index is in the index (this command and the
// ones before it), and the shard's mark moves up to Index (MemberMark). A
// router trusts the index for a shard only up to its mark.
type MemberSet struct {
	Shard    ShardRef      `json:"shard"`
	Index    uint64        `json:"index"`
	Counts   []MemberCount `json:"counts,omitempty"`
	Complete bool          `json:"complete,omitempty"`
}

// MemberCount is one client's count in a MemberSet.
type MemberCount struct {
	App    string `json:"app"`
	Client string `json:"client"`
	Count  uint64 `json:"n"`
}

// ClaimUnique maps (App, Hash) to Cid unless it maps to a conversation
// already; the result names the winner.
type ClaimUnique struct {
	App  string `json:"app"`
	Hash string `json:"hash"` // UniqueHash of the member set
	Cid  string `json:"cid"`
}

// ReleaseUnique removes (App, Hash) if it still maps to Cid.
type ReleaseUnique struct {
	App  string `json:"app"`
	Hash string `json:"hash"`
	Cid  string `json:"cid"`
}

// ImportIDs registers conversation ids that live on a shard whatever they
// look like: LeanCloud ids brought by `relaymesh import`, and pre-mesh ids
// that happen to parse as ours. An id already registered on the same
// shard is left; one registered on another shard refuses the whole command
// (ErrConflict).
type ImportIDs struct {
	App   string   `json:"app"`
	Shard ShardRef `json:"shard"`
	Cids  []string `json:"cids"`
}

// PutApp stores an app's settings, a JSON object. With IfAbsent, an app
// already there is left as it is.
type PutApp struct {
	ID       string          `json:"id"`
	Settings json.RawMessage `json:"settings"`
	IfAbsent bool            `json:"if_absent,omitempty"`
}

// DeleteApp removes an app's settings.
type DeleteApp struct {
	ID string `json:"id"`
}

func (*AddRegion) Op() Op      { return OpAddRegion }
func (*RemoveRegion) Op() Op   { return OpRemoveRegion }
func (*PutNode) Op() Op        { return OpPutNode }
func (*RemoveNode) Op() Op     { return OpRemoveNode }
func (*AddShard) Op() Op       { return OpAddShard }
func (*SetShardVoters) Op() Op { return OpSetShardVoters }
func (*SetShardOpen) Op() Op   { return OpSetShardOpen }
func (*MemberDelta) Op() Op    { return OpMemberDelta }
func (*ClaimUnique) Op() Op    { return OpClaimUnique }
func (*ReleaseUnique) Op() Op  { return OpReleaseUnique }
func (*ImportIDs) Op() Op      { return OpImportIDs }
func (*PutApp) Op() Op         { return OpPutApp }
func (*DeleteApp) Op() Op      { return OpDeleteApp }
func (*MemberSet) Op() Op      { return OpMemberSet }

// Result is what Apply returns for a command it applied (a refusal is an
// *Error). Fields not named for an op are zero.
type Result struct {
	// AddRegion: the region's number; AddShard: the shard.
	Region uint8
	Shard  ShardRef
	// AddRegion, AddShard, PutNode, PutApp: it was there already (and,
	// for AddRegion without Update, AddShard, and PutNode and PutApp with
	// IfAbsent, left as it was).
	Existing bool
	// Whether the command changed the state: for RemoveRegion,
	// RemoveNode, DeleteApp, ReleaseUnique, whether something was
	// removed; for MemberDelta, whether a client's entry changed (false:
	// every client's part was stale or a no-op). Not set by AddRegion and
	// AddShard (see Existing).
	Changed bool
	// ClaimUnique: the conversation (App, Hash) maps to, and whether it is
	// this command's Cid.
	Cid string
	Won bool
	// ImportIDs: ids newly registered (the others were there already).
	Added int
}
