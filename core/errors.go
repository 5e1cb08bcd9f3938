package core

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Errors of the core; every client-facing failure is classified through
// errorCodes.
var (
	ErrClosed       = errors.New("core: closed")
	ErrNotLeader    = errors.New("core: not the shard leader, retry")
	errUnknownApp   = errors.New("core: unknown app")
	errMalformed    = errors.New("core: malformed command")
	errUnsupported  = errors.New("core: unsupported command")
	errSendTarget   = errors.New("core: not a member of the conversation")
	errLogsRejected = errors.New("core: history requires membership")
	errQueryFailed  = errors.New("core: conversation query failed")
	errTagConflict  = errors.New("core: session with this tag exists")
	errInternal     = errors.New("core: internal error")
	// validate.go
	errInvalidClientID = errors.New("core: invalid clientId")
	errInvalidInput    = errors.New("core: invalid input")
)

// errorCodes is the one table from errors to LeanCloud codes; the first
// match (errors.Is) wins, anything else is 4200.
var errorCodes = []struct {
	err  error
	code int32
}{
	{ErrNotLeader, lcpb.ErrInternal},
	{ErrClosed, lcpb.ErrInternal},
	{errUnknownApp, lcpb.ErrAppNotAvailable},
	{errSendTarget, lcpb.ErrInvalidMessagingTarget},
	{errRoomNotAllowed, lcpb.ErrConversationNotAllowed},
	{errLogsRejected, lcpb.ErrConversationLogRejected},
	{errQueryFailed, lcpb.ErrConversationQueryFailed},
	{errTagConflict, lcpb.ErrSessionConflict},
	{errTokenRevoked, lcpb.ErrSessionTokenExpired}, // auth.go
	{errInvalidClientID, lcpb.ErrInvalidLogin},
	{errInvalidInput, lcpb.ErrConversationAPIFailed},
	{shard.ErrAttrTooLarge, lcpb.ErrConversationUpdateFailed},
	{errMessageRejected, lcpb.ErrMessageRejectedByApp},
	{errConvRejected, lcpb.ErrConversationRejectedByApp},
	{errUpdateRejected, lcpb.ErrMessageUpdateRejected}, // patchhook.go
	{shard.ErrConvNotFound, lcpb.ErrConversationNotFound},
	{shard.ErrNotMember, lcpb.ErrConvMembershipRequired},
	{shard.ErrConvFull, lcpb.ErrConversationFull},
	{shard.ErrMsgNotFound, lcpb.ErrMessageNotFound},
	{shard.ErrNotSender, lcpb.ErrMessageOwnershipRequired},
	{shard.ErrUpdateForbidden, lcpb.ErrConversationUpdateRejected},
	{shard.ErrConvExists, lcpb.ErrConversationAPIFailed},
	{shard.ErrRoleTooLow, codeOperationUnauthorized},
	{shard.ErrUnknownRole, codeUnknownRole},
	{shard.ErrNeedOwner, codeNeedOwner},
	{shard.ErrShutup, codeSilenced},
	{shard.ErrShutupFull, codeSilencedListFull},
	{shard.ErrBlocked, lcpb.ErrConversationBlacklisted},
	{shard.ErrBlacklistFull, codeBlacklistFull},
	{shard.ErrTempExpired, lcpb.ErrTemporaryConvExpired},
	{shard.ErrTempConv, lcpb.ErrNormalConvRequired},
	{shard.ErrNotSystem, lcpb.ErrSystemConvRequired},
	{shard.ErrSystemConv, lcpb.ErrNormalConvRequired},
	{shard.ErrBroadcastQuota, lcpb.ErrConversationAPIQuota},
	{shard.ErrBadCommand, lcpb.ErrConversationAPIFailed},
	{errDeviceNotFound, codeObjectNotFound}, // devices.go
	{shard.ErrDeviceNotFound, codeObjectNotFound},
	{errBadDevice, codeBadParams},
	{shard.ErrBadDevice, codeBadParams},
	{errBadDeviceToken, codeInvalidDeviceToken},
	{errMalformed, lcpb.ErrInternal},
	{errUnsupported, lcpb.ErrInternal},
}

// LeanCloud codes the JS SDK does not name (so not in lcpb), from the
// server's error list (REST-AND-HOOKS.md §3, DOCS im-faq.mdx).
const (
	codeOperationUnauthorized = 4320 // CONVERSATION_OPERATION_UNAUTHORIZED: role too low
	codeUnknownRole           = 4321 // UNKNOWN_CONVERSATION_ROLE
	codeNeedOwner             = 4324 // CONVERSATION_NEED_OWNER: would lose the Owner
	codeBlacklistFull         = 4543 // BLACKLIST_FULL
	codeSilencedListFull      = 4561 // SILIENCED_MEMBER_LIST_FULL
	codeSilenced              = 4563 // SILIENCED: a muted member sends
)

var extraNames = map[int32]string{
	codeOperationUnauthorized: "CONVERSATION_OPERATION_UNAUTHORIZED",
	codeUnknownRole:           "UNKNOWN_CONVERSATION_ROLE",
	codeNeedOwner:             "CONVERSATION_NEED_OWNER",
	codeBlacklistFull:         "BLACKLIST_FULL",
	codeSilencedListFull:      "SILIENCED_MEMBER_LIST_FULL",
	codeSilenced:              "SILIENCED",
}

// codeName is the LeanCloud name of code.
func codeName(code int32) string {
	if n, ok := extraNames[code]; ok {
		return n
	}
	return lcpb.ErrorName(code)
}

// failedPids renders partial failures as ErrorCommands, one per code in
// order of first appearance, each listing its clientIds.
func failedPids(fs []shard.Failure) []*lcpb.ErrorCommand {
	var out []*lcpb.ErrorCommand
	byCode := map[int32]*lcpb.ErrorCommand{}
	for _, f := range fs {
		code := codeFor(f.Err)
		e := byCode[code]
		if e == nil {
			e = &lcpb.ErrorCommand{Code: proto.Int32(code), Reason: proto.String(codeName(code))}
			byCode[code] = e
			out = append(out, e)
		}
		e.Pids = append(e.Pids, f.PID)
	}
	return out
}

// codeFor maps err to a LeanCloud code.
func codeFor(err error) int32 {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return lcpb.ErrInternal
}
