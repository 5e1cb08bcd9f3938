package lab

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/netem"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// applyTimeout bounds waiting for every process to acknowledge new rules
// when the caller's context has no deadline.
const applyTimeout = 10 * time.Second

// Link returns the link from region a to region b in force now.
func (l *Lab) Link(a, b string) netem.Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rules.Link(a, b)
}

// SetLink sets the link between regions a and b, both ways, and returns
// once every running process applies it. A partition of the pair stays in
// force (Heal lifts it; the link then is this one).
func (l *Lab) SetLink(ctx context.Context, a, b string, link netem.Link) error {
	if err := link.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	link.Down = false
	return l.change(ctx, a, b, func(from, to string, base, cur *netem.Rules) {
		base.Set(from, to, link)
		k := link
		k.Down = cur.Link(from, to).Down
		cur.Set(from, to, k)
	})
}

// Partition cuts regions a and b apart (b "" or "*": a from every other
// region): nothing passes either way until Heal. It returns once every
// running process applies it.
func (l *Lab) Partition(ctx context.Context, a, b string) error {
	return l.change(ctx, a, b, func(from, to string, base, cur *netem.Rules) {
		k := cur.Link(from, to)
		k.Down = true
		cur.Set(from, to, k)
	})
}

// Heal restores the link between a and b (b "" or "*": between a and
// every other region) as it was set, and returns once every running
// process applies it.
func (l *Lab) Heal(ctx context.Context, a, b string) error {
	return l.change(ctx, a, b, func(from, to string, base, cur *netem.Rules) {
		cur.Set(from, to, base.Link(from, to))
	})
}

// change applies f to both directions of every pair (a, b) names, writes
// the new rules and waits for them to be in force.
func (l *Lab) change(ctx context.Context, a, b string, f func(from, to string, base, cur *netem.Rules)) error {
	if _, err := l.Region(a); err != nil {
		return err
	}
	var others []string
	if b == "" || b == netem.Any {
		for _, r := range l.regions {
			if r.Name != a {
				others = append(others, r.Name)
			}
		}
	} else {
		if _, err := l.Region(b); err != nil {
			return err
		}
		if a == b {
			return fmt.Errorf("%w: a region has no link to itself", ErrConfig)
		}
		others = []string{b}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	base, cur := l.base.Clone(), l.rules.Clone()
	for _, o := range others {
		f(a, o, base, cur)
		f(o, a, base, cur)
	}
	cur.Generation = l.rules.Generation + 1
	base.Generation = cur.Generation
	l.base, l.rules = base, cur
	l.table.Set(cur)
	err := netem.WriteFile(l.netemPath, cur)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("lab: write rules: %w", err)
	}
	l.writeLabFile()
	return l.waitApplied(ctx, cur.Generation)
}

// waitApplied waits until every running node acknowledged generation gen
// of the rules file.
func (l *Lab) waitApplied(ctx context.Context, gen uint64) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, applyTimeout)
		defer cancel()
	}
	for {
		var behind []string
		for _, n := range l.allNodes() {
			if !n.Running() {
				continue
			}
			if g, err := netem.ReadAck(l.netemPath + ".ack." + n.Name); err != nil || g < gen {
				behind = append(behind, n.Name)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: network rules %d not applied by %v: %w", gen, behind, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Probe measures the emulated network through real processes: n PINGs
// over QUIC from the lab's probe node in region from (127.B.i.250, shaped
// like every node) to a core of region to, after one that dials. It
// returns each round trip; a partitioned pair fails by ctx.
func (l *Lab) Probe(ctx context.Context, from, to string, n int) ([]time.Duration, error) {
	dst, err := l.Region(to)
	if err != nil {
		return nil, err
	}
	node, err := l.probeNode(from)
	if err != nil {
		return nil, err
	}
	ping, _ := proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING})
	// The first core that answers; retried until ctx ends, since a dial
	// begun during a partition may still fail just after it healed.
	var addr string
	var last error
	for addr == "" {
		for _, c := range dst.Cores {
			if !c.Running() {
				continue
			}
			if _, last = node.Call(ctx, c.MeshAddr, "client", ping); last == nil {
				addr = c.MeshAddr
				break
			}
		}
		if addr != "" {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lab: probe %s→%s: no core answered: %v", from, to, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := node.Call(ctx, addr, "client", ping); err != nil {
			return out, fmt.Errorf("lab: probe %s→%s: %w", from, to, err)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// probeNode returns region's probe node, starting it on first use.
func (l *Lab) probeNode(region string) (*mesh.Node, error) {
	r, err := l.Region(region)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if p := l.probes[region]; p != nil {
		return p, nil
	}
	pki := filepath.Join(l.dir, "pki")
	name := "lab-probe-" + region
	id, err := mesh.LoadIdentity(filepath.Join(pki, name+".crt"), filepath.Join(pki, name+".key"), filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("lab: probe identity: %w", err)
	}
	addr := net.JoinHostPort(l.host(r.Index, 250).String(), "0")
	p, err := mesh.Listen(addr, id, l.log.With("part", "probe"), mesh.WithPacketConn(func(u *net.UDPConn) net.PacketConn {
		return netem.NewConn(u, netem.Config{Table: l.table})
	}))
	if err != nil {
		return nil, fmt.Errorf("lab: probe node: %w", err)
	}
	l.probes[region] = p
	return p, nil
}
