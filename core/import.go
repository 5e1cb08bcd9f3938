package core

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Import (AdminRequest IMPORT; REST POST /1.2/rtm/import/…, master key;
// `relaymesh import leancloud`): conversations and message history from
// LeanCloud, written through raft as one shard.OpImport per request
// (core/shard/import.go), so every replica holds the same.
//
// import_json is {"convs":[shard.ImportConv…]} (at most
// shard.MaxImportConvs) or {"msgs":[shard.ImportMsg…]} of cid (at most
// shard.MaxImportMsgs), with shard's JSON field names. The reply's
// import_json is an importOutcome.
//
// Ids: LeanCloud's ids are not ours (catalog.ParseConvID): each belongs to
// the shard the catalog registered it on (the router places them,
// importroute.go), else to the legacy shard (region 1 shard 0,
// docs/MESH.md "Identifiers"); an id that parses as ours is refused (it
// would name a shard that never minted it), and every id must be this
// shard's. Before anything is proposed the core checks
// every clientId, message id, size and count: a conversation that fails is
// refused alone (reported, not proposed); a message that fails refuses the
// request.

// maxImportData bounds one imported message's content. LeanCloud's cap is
// 5 KB; the margin takes typed messages its REST API let through.
const maxImportData = 64 << 10

// importOutcome is AdminReply.import_json.
type importOutcome struct {
	Created  []string        `json:"created"`
	Existing []string        `json:"existing"`
	Refused  []importRefusal `json:"refused"`
	New      int             `json:"new"`
	Dup      int             `json:"dup"`
}

type importRefusal struct {
	ID    string `json:"id"`
	Code  int32  `json:"code"`
	Error string `json:"error"`
}

// checkImportID checks a conversation or message id: 1–64 printable ASCII
// characters other than space and ':' (LeanCloud's are 24 hex characters
// and 22 of base64).
func checkImportID(what, id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: %s id %q must be 1-64 characters", errInvalidInput, what, id)
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; b <= 0x20 || b >= 0x7f || b == ':' {
			return fmt.Errorf("%w: %s id %q holds a space, ':' or a character outside printable ASCII", errInvalidInput, what, id)
		}
	}
	return nil
}

// checkImportHome refuses an id this shard does not home: the shard the
// catalog registered it on (importroute.go), else the legacy shard. The
// router registers an id just before it sends it here, so a local
// catalog replica that does not have the entry yet is waited for a
// little (importHomeWait).
func (c *Core) checkImportHome(ctx context.Context, app, cid string) error {
	if _, ours := catalog.ParseConvID(cid); ours {
		return fmt.Errorf("%w: %s is a relaymesh id, not an imported one", errInvalidInput, cid)
	}
	home := func() catalog.ConvID {
		if c.catalog != nil {
			if ref, known, err := c.catalog.Lookup(app, cid); err == nil && known {
				return catalog.ConvID(ref)
			}
		}
		return catalog.HomeOf(cid)
	}
	h := home()
	if h != c.home && c.catalog != nil && catalog.IsHexID(cid) {
		wait := time.NewTimer(importHomeWait)
		defer wait.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for h != c.home {
			select {
			case <-tick.C:
				h = home()
				continue
			case <-wait.C:
			case <-ctx.Done():
			}
			break
		}
	}
	if h != c.home {
		return fmt.Errorf("%w: %s belongs to region %d shard %d", errInvalidInput, cid, h.Region, h.Shard)
	}
	return nil
}

// importHomeWait bounds how long a shard waits for its catalog replica to
// show an imported id's entry.
const importHomeWait = 3 * time.Second

// importProbe answers which of convs this shard holds (as Existing).
func (c *Core) importProbe(app string, convs []shard.ImportConv) (*meshpb.ClientReply, error) {
	if len(convs) > shard.MaxImportConvs {
		return nil, fmt.Errorf("%w: %d conversations, at most %d", errInvalidInput, len(convs), shard.MaxImportConvs)
	}
	out := importOutcome{Created: []string{}, Existing: []string{}, Refused: []importRefusal{}}
	st := c.state()
	for _, ic := range convs {
		if err := checkImportID("conversation", ic.ID); err != nil {
			return nil, err
		}
		conv, err := shard.GetConv(st, app, ic.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		if conv != nil {
			out.Existing = append(out.Existing, ic.ID)
		}
	}
	return importReply(out)
}

func (c *Core) checkImportConv(ctx context.Context, app string, ic *shard.ImportConv) error {
	if err := checkImportID("conversation", ic.ID); err != nil {
		return err
	}
	if err := c.checkImportHome(ctx, app, ic.ID); err != nil {
		return err
	}
	if ic.Creator != "" {
		if err := checkClientID(ic.Creator); err != nil {
			return err
		}
	}
	if err := checkMembers(ic.Members); err != nil {
		return err
	}
	if err := checkMembers(ic.Muted); err != nil {
		return err
	}
	if err := checkMembers(ic.Managers); err != nil {
		return err
	}
	return checkAttr(ic.Attr)
}

func checkImportMsg(m *shard.ImportMsg) error {
	if err := checkImportID("message", m.ID); err != nil {
		return err
	}
	if err := checkClientID(m.From); err != nil {
		return fmt.Errorf("message %s: %w", m.ID, err)
	}
	if m.T <= 0 {
		return fmt.Errorf("%w: message %s has no timestamp", errInvalidInput, m.ID)
	}
	if len(m.Data) > maxImportData {
		return fmt.Errorf("%w: message %s is %d bytes, at most %d", errInvalidInput, m.ID, len(m.Data), maxImportData)
	}
	return checkMentions(m.MentionPids)
}

// importRequest is AdminRequest.import_json. With Probe (a router placing
// imported ids, importroute.go) the shard only answers which of Convs it
// holds, as Existing, and writes nothing.
type importRequest struct {
	shard.ImportOp
	Probe bool `json:"probe,omitempty"`
}

// adminImport serves AdminRequest IMPORT.
func (c *Core) adminImport(ctx context.Context, app string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	var in importRequest
	if err := json.Unmarshal(a.GetImportJson(), &in); err != nil {
		return nil, fmt.Errorf("%w: import: %v", errInvalidInput, err)
	}
	if in.Probe {
		return c.importProbe(app, in.Convs)
	}
	if c.cmdVer < shard.Version3 {
		// Refused as input, not as a server failure: the importer must not
		// retry what will fail alike until the cluster's pin moves.
		return nil, fmt.Errorf("%w: import needs shard command version %d; this cluster is pinned to %d ([core] command_version): raise it once every core runs a release that applies %d",
			errInvalidInput, shard.Version3, c.cmdVer, shard.Version3)
	}
	out := importOutcome{Created: []string{}, Existing: []string{}, Refused: []importRefusal{}}
	cmd := &shard.Command{Op: shard.OpImport, App: app, Now: c.nowMS()}
	switch {
	case len(in.Convs) > 0 && len(in.Msgs) > 0, len(in.Convs) == 0 && len(in.Msgs) == 0:
		return nil, fmt.Errorf("%w: import conversations or messages, one kind per request", errInvalidInput)
	case len(in.Convs) > shard.MaxImportConvs:
		return nil, fmt.Errorf("%w: %d conversations, at most %d", errInvalidInput, len(in.Convs), shard.MaxImportConvs)
	case len(in.Msgs) > shard.MaxImportMsgs:
		return nil, fmt.Errorf("%w: %d messages, at most %d", errInvalidInput, len(in.Msgs), shard.MaxImportMsgs)
	case len(in.Convs) > 0:
		ok := in.Convs[:0]
		for _, ic := range in.Convs {
			if err := c.checkImportConv(ctx, app, &ic); err != nil {
				out.Refused = append(out.Refused, importRefusal{ID: ic.ID, Code: codeFor(err), Error: err.Error()})
				continue
			}
			ok = append(ok, ic)
		}
		if len(ok) == 0 {
			return importReply(out)
		}
		cmd.Import = &shard.ImportOp{Convs: ok}
	default:
		if err := c.checkImportHome(ctx, app, a.GetCid()); err != nil {
			return nil, err
		}
		for i := range in.Msgs {
			if err := checkImportMsg(&in.Msgs[i]); err != nil {
				return nil, err
			}
		}
		cmd.CID = a.GetCid()
		cmd.Import = &shard.ImportOp{Msgs: in.Msgs}
	}
	res, err := c.propose(withAdmin(ctx), cmd)
	if err != nil {
		return nil, err
	}
	r := res.Import
	out.Created = append(out.Created, r.Created...)
	out.Existing = append(out.Existing, r.Existing...)
	for _, f := range r.Refused {
		out.Refused = append(out.Refused, importRefusal{ID: f.ID, Code: codeFor(f.Err), Error: f.Err.Error()})
	}
	out.New, out.Dup = r.MsgsNew, r.MsgsDup
	return importReply(out)
}

func importReply(out importOutcome) (*meshpb.ClientReply, error) {
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{ImportJson: b}}, nil
}
