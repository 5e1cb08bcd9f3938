package core

import "github.com/relaymesh/relaymesh/proto/meshpb"

// adminStats answers STATS (GET /1.2/rtm/stats) for app: count online now,
// count_today seen today (relay.Relay.Usage: the relay's session registry
// and its clientIds of this UTC day).
func (c *Core) adminStats(app string) *meshpb.ClientReply {
	online, today := c.relay.Usage(app)
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Count: online, CountToday: today}}
}
