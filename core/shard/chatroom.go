package shard

// Chatrooms (transient conversations, Conv.Transient) keep no member list
// here: who is in one is region-local session state of the relay
// (relay/rooms.go, core/chatroom.go), never raft. The shard stores the row and the history,
// writes no member index entries (so no unread and no offline delivery on
// login), and lets the proposer decide who may post: the core proposes an
// append only for a session that has joined.

// storedMembers is the member list a new conversation stores.
func storedMembers(c *Command, members []string) []string {
	if c.Transient {
		return nil
	}
	return members
}

// mayAppend reports whether from may append to conv by the stored state.
func (c *Conv) mayAppend(from string) bool { return c.Transient || c.IsMember(from) }
