package core

import "github.com/relaymesh/relaymesh/core/shard"

// Limits bounds what a conversation holds and what a login delivers
// (Config.Limits). A zero field takes its default (LeanCloud's numbers).
type Limits struct {
	// MaxMembers caps the members of a normal conversation (default
	// shard.MaxMembers, 500). A start with more is refused with 4304
	// CONVERSATION_FULL; an add past it fails per client in failedPids
	// (4304). Chatrooms have no cap; temporary conversations have their
	// own fixed one (shard.MaxTempMembers, 10).
	MaxMembers int
	// MaxOfflinePerConv caps the offline messages a protocol .1 login
	// pushes per conversation (default 100). They are the newest ones
	// (FIFO: an older one falls out as a newer one arrives); when older
	// ones were left in history, the last one pushed carries hasMore.
	MaxOfflinePerConv int
	// MaxUnreadConvs caps the conversations one login notifies (default
	// 50): the unread list of a .3 login, and the conversations whose
	// offline messages a .1 login pushes. The most recently active ones
	// are notified; the rest stay in history (and in conv/query).
	MaxUnreadConvs int
	// MaxQueryScan caps the conversations one conv/query may examine
	// (default DefaultMaxQueryScan, 10,000); a query that would examine
	// more is refused with 4310 (query.go).
	MaxQueryScan int
	// QueryScanPerSecond is each app's conv/query budget: conversations
	// examined per second, with a burst of 2 × MaxQueryScan (default
	// DefaultQueryScanPerSecond, 50,000). Past it queries get 4310.
	QueryScanPerSecond int
}

// Default limits.
const (
	DefaultMaxOfflinePerConv = 100
	DefaultMaxUnreadConvs    = 50
)

// withDefaults fills the zero fields.
func (l Limits) withDefaults() Limits {
	if l.MaxMembers <= 0 {
		l.MaxMembers = shard.MaxMembers
	}
	if l.MaxOfflinePerConv <= 0 {
		l.MaxOfflinePerConv = DefaultMaxOfflinePerConv
	}
	if l.MaxUnreadConvs <= 0 {
		l.MaxUnreadConvs = DefaultMaxUnreadConvs
	}
	if l.MaxQueryScan <= 0 {
		l.MaxQueryScan = DefaultMaxQueryScan
	}
	if l.QueryScanPerSecond <= 0 {
		l.QueryScanPerSecond = DefaultQueryScanPerSecond
	}
	return l
}
