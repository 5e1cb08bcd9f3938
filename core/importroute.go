package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Placing imported conversations (docs/MESH.md "Identifiers"): a
// LeanCloud id names no shard, so the catalog's imported-id entries say
// where one lives (catalog.ImportIDs; every router reads them locally,
// Router.home). The router that receives an import of conversations
// places each one:
//
//  1. an id the catalog has registered goes to its shard;
//  2. an id the legacy shard already holds (imported before the catalog
//     placed imports) stays there, and is registered there;
//  3. any other id is placed in this region, on the shard its hash picks
//     (so a retry picks the same), and registered there before it is
//     written.
//
// Registration comes first: an import that fails after it leaves an entry
// naming a shard without the conversation, which a retry fills, whereas a
// conversation written before its entry would be found nowhere but on the
// legacy shard. Two importers of one id at once agree through the
// catalog, whose ImportIDs refuses a second shard (ErrConflict): the
// loser's request fails as a server error, and its retry finds the entry.
// Ids that cannot be registered (not 24 lowercase hex characters) go to
// the legacy shard, as before the catalog.

// importConvs serves IMPORT of conversations: it splits them by shard,
// registers the new ones, and merges the shards' outcomes.
func (r *Router) importConvs(ctx context.Context, req *meshpb.ClientRequest, convs []shard.ImportConv) (*meshpb.ClientReply, error) {
	app := req.GetAppId()
	legacy := catalog.LegacyShard
	// One shard in the legacy shard's region, or no catalog: nothing to
	// place.
	if r.catalog == nil || (r.region == legacy.Region && len(r.shards) == 1) {
		return r.importTo(ctx, req, legacy, convs)
	}
	groups := map[catalog.ShardRef][]shard.ImportConv{}
	var unknown []shard.ImportConv
	for _, ic := range convs {
		if _, ours := catalog.ParseConvID(ic.ID); ours || !catalog.IsHexID(ic.ID) {
			groups[legacy] = append(groups[legacy], ic) // refused there, or legacy
			continue
		}
		ref, known, err := r.catalog.Lookup(app, ic.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: catalog: %v", errInternal, err)
		}
		if known {
			groups[ref] = append(groups[ref], ic)
			continue
		}
		unknown = append(unknown, ic)
	}
	if len(unknown) > 0 {
		held, err := r.legacyHolds(ctx, req, unknown)
		if err != nil {
			return nil, err
		}
		place := map[catalog.ShardRef][]shard.ImportConv{}
		for _, ic := range unknown {
			ref := legacy
			if !held[ic.ID] {
				ref = r.placeImported(app, ic.ID)
			}
			place[ref] = append(place[ref], ic)
		}
		for ref, ics := range place {
			ids := make([]string, len(ics))
			for i, ic := range ics {
				ids[i] = ic.ID
			}
			if _, err := r.catalog.Apply(ctx, &catalog.ImportIDs{App: app, Shard: ref, Cids: ids}); err != nil {
				// ErrConflict: another importer placed one of them first;
				// a retry finds its entry.
				return nil, fmt.Errorf("%w: registering imported ids on shard %s: %v", errInternal, ref, err)
			}
			groups[ref] = append(groups[ref], ics...)
		}
	}
	refs := make([]catalog.ShardRef, 0, len(groups))
	for ref := range groups {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(a, b catalog.ShardRef) int {
		return int(a.Region)<<16 + int(a.Shard) - (int(b.Region)<<16 + int(b.Shard))
	})
	total := importOutcome{Created: []string{}, Existing: []string{}, Refused: []importRefusal{}}
	for _, ref := range refs {
		rep, err := r.importTo(ctx, req, ref, groups[ref])
		if err != nil {
			return nil, err
		}
		if rep.GetErrorCode() != 0 {
			return rep, nil
		}
		var out importOutcome
		if err := json.Unmarshal(rep.GetAdmin().GetImportJson(), &out); err != nil {
			return nil, fmt.Errorf("%w: import outcome of shard %s: %v", errInternal, ref, err)
		}
		total.Created = append(total.Created, out.Created...)
		total.Existing = append(total.Existing, out.Existing...)
		total.Refused = append(total.Refused, out.Refused...)
	}
	return importReply(total)
}

// placeImported is the shard of this region a new imported id goes to.
func (r *Router) placeImported(app, cid string) catalog.ShardRef {
	h := fnv.New32a()
	h.Write([]byte(app))
	h.Write([]byte{0})
	h.Write([]byte(cid))
	return catalog.ShardRef{Region: r.region, Shard: uint16(h.Sum32() % uint32(len(r.shards)))}
}

// legacyHolds asks the legacy shard which of convs it holds already.
func (r *Router) legacyHolds(ctx context.Context, req *meshpb.ClientRequest, convs []shard.ImportConv) (map[string]bool, error) {
	probe := importRequest{Probe: true}
	for _, ic := range convs {
		probe.Convs = append(probe.Convs, shard.ImportConv{ID: ic.ID})
	}
	rep, err := r.importTo(ctx, req, catalog.LegacyShard, nil, probe)
	if err != nil {
		return nil, err
	}
	if rep.GetErrorCode() != 0 {
		return nil, fmt.Errorf("%w: asking the legacy shard for imported ids: %s", errInternal, rep.GetErrorReason())
	}
	var out importOutcome
	if err := json.Unmarshal(rep.GetAdmin().GetImportJson(), &out); err != nil {
		return nil, fmt.Errorf("%w: legacy shard's probe: %v", errInternal, err)
	}
	held := map[string]bool{}
	for _, id := range out.Existing {
		held[id] = true
	}
	return held, nil
}

// importTo sends an IMPORT of convs (or the request body given) to shard
// ref, wherever it is.
func (r *Router) importTo(ctx context.Context, req *meshpb.ClientRequest, ref catalog.ShardRef, convs []shard.ImportConv, body ...importRequest) (*meshpb.ClientReply, error) {
	in := importRequest{ImportOp: shard.ImportOp{Convs: convs}}
	if len(body) > 0 {
		in = body[0]
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	sub := proto.Clone(req).(*meshpb.ClientRequest)
	sub.Admin.ImportJson = b
	if len(in.Convs) > 0 {
		sub.Admin.Cid = in.Convs[0].ID
	}
	if ref.Region != r.region {
		if !r.remote.Remote(ref.Region) {
			return nil, fmt.Errorf("%w: shard %s is in a region this core does not know", errInternal, ref)
		}
		rep, err := r.callHome(ctx, ref.Region, int(ref.Shard), sub)
		if errors.Is(err, errRegionDown) {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		return rep, err
	}
	if int(ref.Shard) >= len(r.shards) {
		return nil, fmt.Errorf("%w: shard %s: this region has %d shards", errInternal, ref, len(r.shards))
	}
	return r.call(ctx, int(ref.Shard), sub)
}
