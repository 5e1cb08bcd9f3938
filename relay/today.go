package relay

import "time"

// Usage figures for the server API's GET /1.2/rtm/stats (Relay.Usage): the
// clientIds of an app with a session now, from the session registry (every
// edge's sessions reach every relay of the region through presence), and
// the clientIds that had a session at some point this UTC day, as this
// relay saw them: the count starts again at midnight UTC and when another
// core takes over the shard.

// dayPeers is the set of clientIds seen with a session this UTC day.
type dayPeers struct {
	day   int64 // the UTC day the set is for, in days since the epoch
	peers map[peerKey]struct{}
}

// utcDay is the UTC day of t, in days since the epoch. It is computed on
// every session noted (each presence report), so it does not format.
func utcDay(t time.Time) int64 { return t.Unix() / 86400 }

// note records that k has a session at now.
func (d *dayPeers) note(k peerKey, now time.Time) {
	day := utcDay(now)
	if d.day != day || d.peers == nil {
		d.day, d.peers = day, make(map[peerKey]struct{})
	}
	d.peers[k] = struct{}{}
}

// count returns how many clientIds of app were seen on the day of now.
func (d *dayPeers) count(app string, now time.Time) int64 {
	if d.day != utcDay(now) {
		return 0
	}
	var n int64
	for k := range d.peers {
		if k.app == app {
			n++
		}
	}
	return n
}
