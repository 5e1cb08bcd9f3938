package catalog

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Proposer commits a command through the catalog's raft group and returns
// the state machine's result; a refusal comes back as the error.
// *raftstore.Node satisfies it (on the leader; a follower answers
// raftstore.ErrNotLeader, and cluster/ forwards to the leader).
type Proposer interface {
	Propose(ctx context.Context, cmd []byte) (any, error)
}

// Store is the catalog for its callers: reads from the local replica's
// state, writes through a Proposer.
type Store struct {
	state pebble.Reader
	p     Proposer
}

// NewStore returns the catalog over a replica's state (raftstore.Node.State)
// and a proposer for its group.
func NewStore(state pebble.Reader, p Proposer) *Store {
	return &Store{state: state, p: p}
}

// Apply proposes cmd and returns its result. A refusal is an *Error
// (errors.Is with ErrInvalid, ErrTooLong, …); anything else is the
// proposer's failure (not leader, outcome unknown, a stopped replica).
func (s *Store) Apply(ctx context.Context, cmd Command) (*Result, error) {
	b, err := Encode(cmd)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCommandBytes { // Apply would refuse it: spare the log
		return nil, fail(ErrTooLong, "command: %d bytes, at most %d", len(b), MaxCommandBytes)
	}
	v, err := s.p.Propose(ctx, b)
	if err != nil {
		return nil, err
	}
	res, ok := v.(*Result)
	if !ok {
		return nil, fmt.Errorf("catalog: %s: unexpected result %T", cmd.Op(), v)
	}
	return res, nil
}

// ClaimUnique claims (app, hash) for cid and returns the conversation that
// holds it: cid, or the one that won before.
func (s *Store) ClaimUnique(ctx context.Context, app, hash, cid string) (winner string, err error) {
	res, err := s.Apply(ctx, &ClaimUnique{App: app, Hash: hash, Cid: cid})
	if err != nil {
		return "", err
	}
	return res.Cid, nil
}

// Regions returns every region, by number.
func (s *Store) Regions() ([]Region, error) { return Regions(s.state) }

// RegionByName returns the region called name.
func (s *Store) RegionByName(name string) (Region, bool, error) { return RegionByName(s.state, name) }

// Nodes returns every node, by id.
func (s *Store) Nodes() ([]Node, error) { return Nodes(s.state) }

// Shards returns the shards of a region (0: all), sorted.
func (s *Store) Shards(region uint8) ([]Shard, error) { return Shards(s.state, region) }

// MemberShards returns the shards holding conversations of (app, client),
// sorted.
func (s *Store) MemberShards(app, client string) ([]ShardRef, error) {
	return MemberShards(s.state, app, client)
}

// UniqueCid returns the conversation a member set's hash maps to.
func (s *Store) UniqueCid(app, hash string) (string, bool, error) {
	return UniqueCid(s.state, app, hash)
}

// Lookup returns the shard that owns a conversation (see Lookup).
func (s *Store) Lookup(app, cid string) (ShardRef, bool, error) { return Lookup(s.state, app, cid) }

// GetApp returns an app's settings.
func (s *Store) GetApp(id string) (json.RawMessage, bool, error) { return GetApp(s.state, id) }

// Apps returns every app with its settings, sorted by id.
func (s *Store) Apps() ([]App, error) { return Apps(s.state) }

// ListApps returns every app id, sorted.
func (s *Store) ListApps() ([]string, error) { return ListApps(s.state) }

// Topology is the initial catalog a deployment declares (the TOML config
// file seeds it; cluster/ decodes it): regions in join order, each with
// its nodes and shards, and the apps.
type Topology struct {
	Regions []RegionSpec `toml:"regions" json:"regions"`
	Apps    []AppSpec    `toml:"apps" json:"apps"`
}

// RegionSpec declares a region.
type RegionSpec struct {
	Name     string      `toml:"name" json:"name"`
	Seeds    []string    `toml:"seeds" json:"seeds,omitempty"`
	CIDRs    []string    `toml:"cidrs" json:"cidrs,omitempty"`
	EdgeURLs []string    `toml:"edges" json:"edges,omitempty"`
	Nodes    []NodeSpec  `toml:"nodes" json:"nodes,omitempty"`
	Shards   []ShardSpec `toml:"shards" json:"shards,omitempty"` // numbered 0, 1, … in order
}

// NodeSpec declares a node of a region.
type NodeSpec struct {
	ID   string `toml:"id" json:"id"`
	Role Role   `toml:"role" json:"role"`
	Mesh string `toml:"mesh" json:"mesh"`
}

// ShardSpec declares a shard of a region.
type ShardSpec struct {
	Voters []string `toml:"voters" json:"voters"`
	Open   bool     `toml:"open" json:"open"`
}

// AppSpec declares an app and its settings.
type AppSpec struct {
	ID       string          `toml:"id" json:"id"`
	Settings json.RawMessage `toml:"-" json:"settings"`
}

// Bootstrap applies an initial topology: it adds what is missing and
// leaves what exists (regions keep their number and addresses, nodes and
// apps their settings, shards their voters), so every process may run it
// at every start, concurrently, and a second run changes nothing. Regions
// are numbered in the order they first join. It stops at the first
// refusal or proposer failure.
func (s *Store) Bootstrap(ctx context.Context, t Topology) error {
	for _, r := range t.Regions {
		res, err := s.Apply(ctx, &AddRegion{Name: r.Name, Seeds: r.Seeds, CIDRs: r.CIDRs, EdgeURLs: r.EdgeURLs})
		if err != nil {
			return fmt.Errorf("catalog: bootstrap region %s: %w", r.Name, err)
		}
		num := res.Region
		for _, n := range r.Nodes {
			node := Node{ID: n.ID, Region: num, Role: n.Role, Mesh: n.Mesh}
			if _, err := s.Apply(ctx, &PutNode{Node: node, IfAbsent: true}); err != nil {
				return fmt.Errorf("catalog: bootstrap node %s: %w", n.ID, err)
			}
		}
		for i, sh := range r.Shards {
			if i >= MaxShards {
				return fmt.Errorf("catalog: bootstrap region %s: %w", r.Name, fail(ErrTooMany, "shards: %d, at most %d", len(r.Shards), MaxShards))
			}
			number := uint16(i)
			if _, err := s.Apply(ctx, &AddShard{Region: num, Voters: sh.Voters, Open: sh.Open, Number: &number}); err != nil {
				return fmt.Errorf("catalog: bootstrap shard %d/%d: %w", num, i, err)
			}
		}
	}
	for _, app := range t.Apps {
		settings := app.Settings
		if len(settings) == 0 {
			settings = json.RawMessage("{}")
		}
		if _, err := s.Apply(ctx, &PutApp{ID: app.ID, Settings: settings, IfAbsent: true}); err != nil {
			return fmt.Errorf("catalog: bootstrap app %s: %w", app.ID, err)
		}
	}
	return nil
}

// MemberMark returns a shard's mark (see MemberMark).
func (s *Store) MemberMark(ref ShardRef) (uint64, error) { return MemberMark(s.state, ref) }

// State is the local replica's state the store reads.
func (s *Store) State() pebble.Reader { return s.state }
