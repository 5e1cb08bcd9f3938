package shard_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/relaymesh/relaymesh/core/shard"
)

// gen produces a seeded, reproducible sequence of shard commands over a
// small world (two apps, a handful of clients, conversations of every
// kind), as the core would propose them, wrong ones included: sends by
// non-members, patches by others, kicks by plain members, ops on
// conversations that do not exist or were deleted, oversized attributes,
// expired temporary conversations. It never looks at results: the
// sequence depends on the seed alone.
type gen struct {
	r     *rand.Rand
	now   int64
	n     int
	apps  []string
	pids  []string
	convs map[string][]string // app -> cids it tried to start (any kind)
	sys   map[string][]string // app -> system conversation ids
	mids  map[string][]msgRef // app/cid -> messages it tried to append
	mem   map[string][]string // app/cid -> clients it tried to make members
	owner map[string]string   // app/cid -> who tried to start it
	sent  map[string][]sysRef // app -> messages it tried to send to one user
}

type sysRef struct {
	cid, mid, pid string
	t             int64
}

type msgRef struct {
	mid, from string
	t         int64 // the Now it was proposed at (the stored t may be later)
}

func newGen(seed uint64) *gen {
	return &gen{
		r:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now:   1_700_000_000_000,
		apps:  []string{"app-a", "app-b"},
		pids:  []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6"},
		convs: map[string][]string{},
		sys:   map[string][]string{},
		mids:  map[string][]msgRef{},
		mem:   map[string][]string{},
		owner: map[string]string{},
		sent:  map[string][]sysRef{},
	}
}

func (g *gen) pick(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[g.r.IntN(len(s))]
}

func (g *gen) pid() string { return g.pick(g.pids) }

// some returns 0..max distinct clients (sometimes one that never appears
// elsewhere).
func (g *gen) some(max int) []string {
	n := g.r.IntN(max + 1)
	out := make([]string, 0, n)
	for range n {
		p := g.pid()
		if g.r.IntN(10) == 0 {
			p = fmt.Sprintf("x%d", g.r.IntN(100))
		}
		out = append(out, p)
	}
	return out
}

func (g *gen) app() string { return g.pick(g.apps) }

// conv picks a conversation of app, now and then one that does not exist.
func (g *gen) conv(app string) string {
	if g.r.IntN(12) == 0 || len(g.convs[app]) == 0 {
		return fmt.Sprintf("nope%d", g.r.IntN(3))
	}
	return g.pick(g.convs[app])
}

// actor picks who acts on cid: mostly a client it tried to make a member,
// so that most commands pass the membership checks.
func (g *gen) actor(app, cid string) string {
	if m := g.mem[app+"/"+cid]; len(m) > 0 && g.r.IntN(4) != 0 {
		return g.pick(m)
	}
	return g.pid()
}

// moderator picks who moderates cid: half the time its creator.
func (g *gen) moderator(app, cid string) string {
	if o := g.owner[app+"/"+cid]; o != "" && g.r.IntN(3) != 0 {
		return o
	}
	return g.actor(app, cid)
}

func (g *gen) joined(app, cid string, pids ...string) {
	g.mem[app+"/"+cid] = append(g.mem[app+"/"+cid], pids...)
}

func (g *gen) msg(app, cid string) (msgRef, bool) {
	ms := g.mids[app+"/"+cid]
	if len(ms) == 0 {
		return msgRef{}, false
	}
	return ms[g.r.IntN(len(ms))], true
}

// attr returns an attribute object, rarely one over shard.MaxAttrBytes.
func (g *gen) attr() json.RawMessage {
	if g.r.IntN(40) == 0 {
		return json.RawMessage(fmt.Sprintf(`{"name":"big","blob":%q}`, strings.Repeat("z", shard.MaxAttrBytes)))
	}
	return json.RawMessage(fmt.Sprintf(`{"name":"n%d","k":{"a":%d,"b":[1,"x"]}}`, g.r.IntN(50), g.r.IntN(9)))
}

// next returns the next command. Now moves forward by 0–30 ms, and now
// and then backwards (a new leader with a slower clock), which the shard
// must absorb (timestamps stay increasing per conversation); now and then
// it jumps by a send dedup window or two, or back by one.
func (g *gen) next() *shard.Command {
	g.n++
	switch {
	case g.r.IntN(400) == 0: // the send dedup window moves (dedup.go)
		g.now += int64(1+g.r.IntN(2)) * shard.DedupWindowMS
	case g.r.IntN(800) == 0: // a leader a window behind
		g.now -= shard.DedupWindowMS
	case g.r.IntN(20) == 0:
		g.now -= int64(g.r.IntN(500))
	default:
		g.now += int64(g.r.IntN(30))
	}
	app := g.app()
	c := &shard.Command{App: app, Now: g.now, From: g.pid()}
	switch w := g.r.IntN(118); {
	case w < 8: // start
		c.Op = shard.OpStart
		c.CID = fmt.Sprintf("c%d", g.n)
		c.Members = g.some(4)
		c.Attr = g.attr()
		switch g.r.IntN(10) {
		case 0:
			c.Transient = true
		case 1:
			c.Temp, c.TTL = true, int64(g.r.IntN(3)) // 0: the default day; 1–2 s: expires soon
			c.CID = shard.TempPrefix + c.CID
		case 2, 3, 4:
			c.Unique = true
		case 5:
			c.CID = g.conv(app) // taken (or not)
		}
		if g.r.IntN(15) == 0 {
			c.MaxMembers = 3
		}
		g.convs[app] = append(g.convs[app], c.CID)
	case w < 14: // add: join, invite, admin
		c.Op, c.CID = shard.OpAdd, g.conv(app)
		c.From = g.actor(app, c.CID)
		if g.r.IntN(3) == 0 {
			c.Members = []string{c.From}
		} else {
			c.Members = g.some(3)
		}
		c.Admin = g.r.IntN(8) == 0
	case w < 19: // remove: quit, kick
		c.Op, c.CID = shard.OpRemove, g.conv(app)
		c.From = g.actor(app, c.CID)
		if g.r.IntN(2) == 0 {
			c.Members = []string{c.From}
		} else {
			c.Members = g.some(2)
		}
		c.Admin = g.r.IntN(8) == 0
	case w < 24: // update
		c.Op, c.CID = shard.OpUpdate, g.conv(app)
		c.From = g.actor(app, c.CID)
		switch g.r.IntN(6) {
		case 0:
			c.Update = json.RawMessage(`{"attr.k.a":{"__op":"Delete"}}`)
		case 1:
			c.Update = json.RawMessage(`{"m":["evil"]}`) // reserved: refused
		case 2:
			c.Update = json.RawMessage(fmt.Sprintf(`{"attr.blob":%q}`, strings.Repeat("q", g.r.IntN(shard.MaxAttrBytes))))
		default:
			c.Update = json.RawMessage(fmt.Sprintf(`{"name":"r%d","attr.k.c":%d}`, g.r.IntN(9), g.r.IntN(9)))
		}
	case w < 26:
		c.Op, c.CID, c.Mute = shard.OpMute, g.conv(app), g.r.IntN(2) == 0
		c.From = g.actor(app, c.CID)
	case w < 50: // append
		c.Op, c.CID = shard.OpAppend, g.conv(app)
		c.From = g.actor(app, c.CID)
		c.MID = fmt.Sprintf("m%d", g.n)
		c.Data = fmt.Sprintf("hello %d", g.n)
		c.Bin = g.r.IntN(15) == 0
		c.Receipt = g.r.IntN(4) == 0
		c.GroupReceipt = g.r.IntN(2) == 0
		if g.r.IntN(3) == 0 {
			c.DT = fmt.Sprintf("dt%d", g.r.IntN(20)) // repeats: dedup
		}
		if g.r.IntN(5) == 0 {
			c.MentionPids, c.MentionAll = g.some(2), g.r.IntN(3) == 0
		}
		c.Admin = g.r.IntN(20) == 0
		g.mids[app+"/"+c.CID] = append(g.mids[app+"/"+c.CID], msgRef{c.MID, c.From, c.Now})
	case w < 55: // patch: edit or recall, by anyone
		c.Op = shard.OpPatch
		cid := g.conv(app)
		for range 1 + g.r.IntN(2) {
			m, ok := g.msg(app, cid)
			if !ok {
				m = msgRef{mid: "nomsg"}
			}
			if g.r.IntN(2) == 0 {
				c.From = m.from // the sender, mostly
			}
			c.Patches = append(c.Patches, shard.Patch{CID: cid, MID: m.mid, Recall: g.r.IntN(3) == 0,
				Data: fmt.Sprintf("edited %d", g.n)})
		}
		c.Admin = g.r.IntN(20) == 0
	case w < 63: // ack / read
		c.Op = shard.OpAck
		if g.r.IntN(2) == 0 {
			c.Op = shard.OpRead
		}
		c.CID = g.conv(app)
		c.From = g.actor(app, c.CID)
		if m, ok := g.msg(app, c.CID); ok && g.r.IntN(2) == 0 {
			c.MID = m.mid
		} else if g.r.IntN(2) == 0 {
			c.T = g.now - int64(g.r.IntN(2000))
		}
	case w < 66 && g.r.IntN(2) == 0: // a round of sends to one conversation (core/sendgroup.go)
		c = &shard.Command{Op: shard.OpBatch}
		cid := g.conv(app)
		for i := range 1 + g.r.IntN(5) {
			sub := &shard.Command{Op: shard.OpAppend, App: app, CID: cid, From: g.actor(app, cid), Now: g.now,
				MID: fmt.Sprintf("m%d.%d", g.n, i), Data: fmt.Sprintf("round %d.%d", g.n, i), Conn: uint64(i)}
			if g.r.IntN(3) == 0 {
				sub.DT = fmt.Sprintf("dt%d", g.r.IntN(20)) // repeats, in the batch too: dedup
			}
			c.Batch = append(c.Batch, sub)
			g.mids[app+"/"+cid] = append(g.mids[app+"/"+cid], msgRef{sub.MID, sub.From, sub.Now})
		}
	case w < 66: // a cursor batch, as the core coalesces them
		c = &shard.Command{Op: shard.OpBatch}
		for range 1 + g.r.IntN(4) {
			op := shard.OpAck
			if g.r.IntN(2) == 0 {
				op = shard.OpRead
			}
			cid := g.conv(app)
			c.Batch = append(c.Batch, &shard.Command{Op: op, App: app, CID: cid, From: g.actor(app, cid), Now: g.now,
				T: g.now - int64(g.r.IntN(1000))})
		}
	case w < 70:
		c.Op, c.CID = shard.OpRole, g.conv(app)
		c.From, c.Members = g.moderator(app, c.CID), []string{g.actor(app, c.CID)}
		if c.Members[0] == g.owner[c.App+"/"+c.CID] {
			c.Members[0] = g.actor(app, c.CID) // mostly someone else
		}
		c.Role = g.pick([]string{shard.RoleManager, shard.RoleManager, shard.RoleManager, shard.RoleMember,
			shard.RoleMember, shard.RoleOwner, "Boss"})
		c.Admin = g.r.IntN(8) == 0
	case w < 74:
		c.Op, c.CID, c.Members, c.Mute = shard.OpShutup, g.conv(app), g.some(3), g.r.IntN(3) != 0
		c.From = g.moderator(app, c.CID)
		if g.r.IntN(3) == 0 {
			c.Temp, c.TTL = true, int64(g.r.IntN(3)) // 0: refused when muting
		}
		c.Admin = g.r.IntN(8) == 0
	case w < 77:
		c.Op, c.CID, c.Members, c.Mute = shard.OpBlock, g.conv(app), g.some(3), g.r.IntN(3) != 0
		c.From = g.moderator(app, c.CID)
		c.Admin = g.r.IntN(8) == 0
	case w < 80:
		c.Op, c.CID = shard.OpWill, g.conv(app)
		c.From = g.actor(app, c.CID)
		c.MID, c.Data, c.Edge, c.Conn = fmt.Sprintf("w%d", g.n), "bye", "e1", uint64(g.r.IntN(3))
		g.mids[app+"/"+c.CID] = append(g.mids[app+"/"+c.CID], msgRef{c.MID, c.From, c.Now})
	case w < 83:
		c.Op, c.Edge, c.Conn, c.Fire = shard.OpEndWills, "e1", uint64(g.r.IntN(3)), g.r.IntN(2) == 0
	case w < 84:
		c.Op, c.CID, c.Admin = shard.OpDelete, g.conv(app), g.r.IntN(4) != 0
	case w < 86:
		c.Op, c.CID, c.Admin = shard.OpDelMsg, g.conv(app), g.r.IntN(5) != 0
		if m, ok := g.msg(app, c.CID); ok {
			c.MID = m.mid
		}
	case w < 87:
		c.Op, c.Admin = shard.OpSetWords, true
		c.Reset = g.r.IntN(3) == 0
		c.Words = []string{fmt.Sprintf("bad%d", g.r.IntN(5)), "worse"}
	case w < 100: // system conversations
		g.sysCommand(c)
	case w < 112: // issue 8: devices, token revocation, notifications
		g.issue8Command(c)
	default: // issue 12: imports from LeanCloud
		g.importCommand(c)
	}
	if g.r.IntN(6) == 0 { // a leader naming fan-outs done, on any command
		g.fanoutDone(c)
	}
	switch c.Op {
	case shard.OpStart:
		g.joined(app, c.CID, append(c.Members, c.From)...)
		if g.owner[app+"/"+c.CID] == "" {
			g.owner[app+"/"+c.CID] = c.From
		}
	case shard.OpAdd:
		g.joined(app, c.CID, c.Members...)
	}
	return c
}

// importCommand makes an import (shard/import.go): conversations, some new,
// some existing, some refused; or messages of a conversation, old, new,
// duplicated, sometimes of one that does not exist. Now and then a client
// (not Admin) tries.
func (g *gen) importCommand(c *shard.Command) {
	app := c.App
	c.Op, c.Admin = shard.OpImport, g.r.IntN(8) != 0
	if g.r.IntN(2) == 0 {
		imp := &shard.ImportOp{}
		for range 1 + g.r.IntN(3) {
			id := fmt.Sprintf("lc%d", g.r.IntN(6))
			if g.r.IntN(3) == 0 {
				id = g.conv(app) // one that may exist
			}
			ic := shard.ImportConv{ID: id, Creator: g.pid(), Members: g.some(4), CreatedAt: g.now - int64(g.r.IntN(100000)),
				Transient: g.r.IntN(6) == 0, Unique: g.r.IntN(4) == 0, Attr: g.attr()}
			if g.r.IntN(10) == 0 {
				ic.CreatedAt = 0
			}
			imp.Convs = append(imp.Convs, ic)
			g.convs[app] = append(g.convs[app], id)
			g.joined(app, id, ic.Members...)
		}
		c.Import = imp
		return
	}
	c.CID = g.conv(app)
	imp := &shard.ImportOp{}
	for range 1 + g.r.IntN(4) {
		m := shard.ImportMsg{ID: fmt.Sprintf("im%d", g.r.IntN(20)), From: g.pid(), T: g.now - int64(g.r.IntN(100000)), Data: "old"}
		if g.r.IntN(15) == 0 {
			m.T = 0
		}
		imp.Msgs = append(imp.Msgs, m)
		g.mids[app+"/"+c.CID] = append(g.mids[app+"/"+c.CID], msgRef{m.ID, m.From, m.T})
	}
	c.Import = imp
}

func (g *gen) sysConv(app string) string {
	if len(g.sys[app]) == 0 || g.r.IntN(15) == 0 {
		return g.conv(app) // not a system conversation, or none
	}
	return g.pick(g.sys[app])
}

func (g *gen) sysCommand(c *shard.Command) {
	app := c.App
	switch g.r.IntN(8) {
	case 0:
		c.Op, c.CID, c.Admin = shard.OpSysStart, fmt.Sprintf("s%d", g.n), g.r.IntN(6) != 0
		c.Attr = g.attr()
		g.sys[app] = append(g.sys[app], c.CID)
	case 1:
		c.Op, c.CID, c.Mute = shard.OpSubscribe, g.sysConv(app), g.r.IntN(4) == 0
		c.Members = []string{c.From}
		if g.r.IntN(4) == 0 {
			c.Members, c.Admin = g.some(3), g.r.IntN(2) == 0
		}
	case 2:
		c.Op, c.CID, c.Admin = shard.OpSysBcast, g.sysConv(app), g.r.IntN(6) != 0
		c.MID, c.Data, c.ValidTill, c.DayLimit = fmt.Sprintf("b%d", g.n), "news", g.now+int64(g.r.IntN(100000)), 3
		c.Global, c.Transient = g.r.IntN(2) == 0, g.r.IntN(5) == 0 // global.go
		g.mids[app+"/"+c.CID] = append(g.mids[app+"/"+c.CID], msgRef{c.MID, c.From, c.Now})
	case 3:
		c.Op, c.CID, c.MID, c.Data = shard.OpSysIn, g.sysConv(app), fmt.Sprintf("i%d", g.n), "to the server"
	case 4:
		c.Op = shard.OpSysSeen
	case 5:
		c.Op, c.CID, c.Admin = shard.OpSysSend, g.sysConv(app), g.r.IntN(6) != 0
		c.MID, c.Data, c.Members = fmt.Sprintf("p%d", g.n), "just you", g.some(3)
		for _, p := range c.Members {
			g.sent[app] = append(g.sent[app], sysRef{c.CID, c.MID, p, c.Now})
		}
	case 6:
		c.Op, c.Admin = shard.OpSysUnsend, true
		c.CID, c.MID, c.T, c.Members = g.sysConv(app), "nop", g.now, []string{g.pid()}
		if s := g.sent[app]; len(s) > 0 && g.r.IntN(4) != 0 {
			m := s[g.r.IntN(len(s))]
			c.CID, c.MID, c.T, c.Members = m.cid, m.mid, m.t, []string{m.pid}
		}
	default:
		c.Op, c.Admin = shard.OpSysUnbroadcast, g.r.IntN(6) != 0
		c.CID = g.sysConv(app)
		if g.r.IntN(3) == 0 {
			c.CID = ""
		}
		if m, ok := g.msg(app, c.CID); ok {
			c.MID = m.mid
		} else {
			c.MID = "nob"
		}
	}
}

// issue8Command fills c with one of the ops issue 8 added: the device
// registry (devices.go), session-token revocation (auth.go), stored
// notifications (notif.go), an idle fan-out flush (fanout.go).
func (g *gen) issue8Command(c *shard.Command) {
	str := func(s string) *string { return &s }
	dev := func() string { return fmt.Sprintf("dev%d", g.r.IntN(4)) }
	switch g.r.IntN(7) {
	case 0:
		c.Op, c.Admin = shard.OpDeviceSave, true
		op := &shard.DeviceOp{NewID: fmt.Sprintf("d%d", g.n), Trusted: g.r.IntN(2) == 0}
		if g.r.IntN(3) == 0 {
			op.ID, op.NewID = fmt.Sprintf("d%d", g.r.IntN(g.n+1)), ""
		}
		if g.r.IntN(2) == 0 {
			op.Set.Type, op.Set.Token = str("ios"), str(dev())
		} else {
			op.Set.Type, op.Set.InstallationID, op.Set.RegistrationID = str("android"), str(dev()), str("fcm-"+dev())
		}
		if g.r.IntN(3) == 0 {
			op.ChannelsOp, op.Channels = shard.ChannelsAdd, []string{g.pid(), "public"}
		}
		c.Device = op
	case 1:
		c.Op = shard.OpDeviceBind
		c.Device = &shard.DeviceOp{NewID: fmt.Sprintf("d%d", g.n), Kind: shard.IdentToken, Ident: dev(), Type: "ios"}
		if g.r.IntN(2) == 0 {
			c.Device.Kind, c.Device.Type = shard.IdentInstallation, "android"
		}
	case 2:
		c.Op = shard.OpDeviceUnbind
		c.Device = &shard.DeviceOp{Kind: shard.IdentToken, Ident: dev()}
	case 3:
		c.Op, c.Admin = shard.OpDeviceDelete, true
		c.Device = &shard.DeviceOp{ID: fmt.Sprintf("d%d", g.r.IntN(g.n+1))}
		if g.r.IntN(2) == 0 {
			c.Device.IfToken = dev()
		}
	case 4:
		c.Op = shard.OpDeviceBadge
		c.Device = &shard.DeviceOp{IDs: []string{fmt.Sprintf("d%d", g.r.IntN(g.n+1)), fmt.Sprintf("d%d", g.r.IntN(g.n+1))}}
	case 5:
		c.Op = shard.OpRevokeTokens
	default:
		c.Op = shard.OpNotif
		cid := g.conv(c.App)
		ev := shard.Notif{Cmd: "conv", Op: "members_joined", CID: cid, TS: g.now, InitBy: c.From, M: g.some(2)}
		if g.r.IntN(3) == 0 {
			ev = shard.Notif{Cmd: "rcp", CID: cid, TS: g.now, ID: fmt.Sprintf("m%d", g.r.IntN(g.n+1)), T: g.now, From: g.pid()}
		}
		c.Notifs = []shard.NotifAppend{{To: g.some(3), Event: ev}}
	}
	if g.r.IntN(10) == 0 {
		c.Op, c.App = shard.OpFanoutDone, "" // an idle flush: no app
	}
}

// fanoutDone names some recent raft indexes done (they may or may not be
// stored messages still in the tail).
func (g *gen) fanoutDone(c *shard.Command) {
	for range g.r.IntN(4) + 1 {
		c.FanoutDone = append(c.FanoutDone, uint64(g.r.IntN(g.n+5)+1))
	}
}
