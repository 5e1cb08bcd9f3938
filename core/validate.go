package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Input the core refuses before anything happens (no hook runs, nothing
// is proposed), for clients and the server API alike:
//
//   - a clientId in a member list (conv/start, add, remove, shutup,
//     member_info_update, blacklist block/unblock, REST members and
//     senders), in mentionPids, or as the sender of a server-API call that
//     is not 1–64 characters of valid UTF-8 without ':' (the separator of
//     LeanCloud's signature strings) or control characters: 4103
//     INVALID_LOGIN, LeanCloud's code for a malformed clientId (the edge
//     refuses the same clientIds at login);
//   - more than MaxMentions mentionPids (LeanCloud's 20), or a dt that is
//     not 1–64 printable ASCII characters (the SDKs send a UUID): 4301
//     CONVERSATION_API_FAILED with the reason;
//   - conversation attributes over shard.MaxAttrBytes, given to a create
//     or an update: 4306 CONVERSATION_UPDATE_FAILED. The shard enforces
//     the same cap on the merged result of an update (shard.Version2).
//
// checkInput looks at the client's command; checkCommand, run on every
// proposal, at the shard command, so no path around the first one
// reaches the state.
const (
	maxClientIDRunes = 64
	MaxMentions      = 20
	maxDTBytes       = 64
)

// checkClientID refuses a malformed clientId.
func checkClientID(id string) error {
	if id == "" || !utf8.ValidString(id) || utf8.RuneCountInString(id) > maxClientIDRunes {
		return fmt.Errorf("%w: clientId %q must be 1-%d characters", errInvalidClientID, id, maxClientIDRunes)
	}
	for _, r := range id {
		if r == ':' || unicode.IsControl(r) {
			return fmt.Errorf("%w: clientId %q holds ':' or a control character", errInvalidClientID, id)
		}
	}
	return nil
}

// checkMembers checks every non-empty clientId of a member list (empty
// ones are dropped by the shard, as before).
func checkMembers(ids []string) error {
	for _, id := range ids {
		if id == "" {
			continue
		}
		if err := checkClientID(id); err != nil {
			return err
		}
	}
	return nil
}

// checkMentions checks mentionPids: at most MaxMentions valid clientIds.
func checkMentions(pids []string) error {
	if len(pids) > MaxMentions {
		return fmt.Errorf("%w: %d mentionPids, at most %d", errInvalidInput, len(pids), MaxMentions)
	}
	for _, p := range pids {
		if err := checkClientID(p); err != nil {
			return err
		}
	}
	return nil
}

// checkDT checks a send's dedup token ("" is none).
func checkDT(dt string) error {
	if len(dt) > maxDTBytes {
		return fmt.Errorf("%w: dt over %d characters", errInvalidInput, maxDTBytes)
	}
	for i := 0; i < len(dt); i++ {
		if dt[i] < 0x21 || dt[i] > 0x7e {
			return fmt.Errorf("%w: dt must be printable ASCII", errInvalidInput)
		}
	}
	return nil
}

// checkAttr refuses attributes over shard.MaxAttrBytes (as stored: compact).
func checkAttr(attr []byte) error {
	if len(attr) <= shard.MaxAttrBytes {
		return nil
	}
	var buf bytes.Buffer
	if json.Compact(&buf, attr) == nil && buf.Len() <= shard.MaxAttrBytes {
		return nil
	}
	return fmt.Errorf("%w: %d bytes, at most %d", shard.ErrAttrTooLarge, len(attr), shard.MaxAttrBytes)
}

// checkInput checks what a client's (or the server API's) command names
// before the command is handled.
func checkInput(r *request) error {
	g := r.cmd
	switch g.GetCmd() {
	case lcpb.CommandType_direct:
		dm := g.GetDirectMessage()
		if err := checkDT(dm.GetDt()); err != nil {
			return err
		}
		return checkMentions(dm.GetMentionPids())
	case lcpb.CommandType_patch:
		for _, p := range g.GetPatchMessage().GetPatches() {
			if err := checkMentions(p.GetMentionPids()); err != nil {
				return err
			}
		}
	case lcpb.CommandType_blacklist:
		switch g.GetOp() {
		case lcpb.OpType_block, lcpb.OpType_unblock:
			return checkMembers(g.GetBlacklistMessage().GetToPids())
		}
	case lcpb.CommandType_conv:
		cm := g.GetConvMessage()
		switch g.GetOp() {
		case lcpb.OpType_start, lcpb.OpType_update:
			if err := checkAttr([]byte(cm.GetAttr().GetData())); err != nil {
				return err
			}
			return checkMembers(cm.GetM())
		case lcpb.OpType_add, lcpb.OpType_remove, lcpb.OpType_join, lcpb.OpType_leave,
			lcpb.OpType_add_shutup, lcpb.OpType_remove_shutup:
			return checkMembers(cm.GetM())
		case lcpb.OpType_member_info_update:
			if t := cm.GetTargetClientId(); t != "" {
				return checkClientID(t)
			}
		}
	}
	return nil
}

// checkCommand checks a shard command before it is proposed.
func checkCommand(cmd *shard.Command) error {
	if cmd.From != "" {
		if err := checkClientID(cmd.From); err != nil {
			return err
		}
	}
	switch cmd.Op {
	case shard.OpStart, shard.OpAdd, shard.OpRemove, shard.OpRole, shard.OpShutup, shard.OpBlock,
		shard.OpSubscribe, shard.OpSysSend, shard.OpSysUnsend:
		if err := checkMembers(cmd.Members); err != nil {
			return err
		}
	}
	switch cmd.Op {
	case shard.OpStart, shard.OpSysStart:
		if err := checkAttr(cmd.Attr); err != nil {
			return err
		}
	case shard.OpUpdate:
		if err := checkAttr(cmd.Update); err != nil {
			return err
		}
	}
	if cmd.DT != "" {
		if err := checkDT(strings.TrimPrefix(cmd.DT, idemKeyPrefix)); err != nil { // failover.go: the edge's key
			return err
		}
	}
	if err := checkMentions(cmd.MentionPids); err != nil {
		return err
	}
	for _, p := range cmd.Patches {
		if err := checkMentions(p.MentionPids); err != nil {
			return err
		}
	}
	for _, sub := range cmd.Batch {
		if sub != nil {
			if err := checkCommand(sub); err != nil {
				return err
			}
		}
	}
	return nil
}
