package core

import (
	"errors"

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
	{errLogsRejected, lcpb.ErrConversationLogRejected},
	{errQueryFailed, lcpb.ErrConversationQueryFailed},
	{errTagConflict, lcpb.ErrSessionConflict},
	{shard.ErrConvNotFound, lcpb.ErrConversationNotFound},
	{shard.ErrNotMember, lcpb.ErrConvMembershipRequired},
	{shard.ErrConvFull, lcpb.ErrConversationFull},
	{shard.ErrMsgNotFound, lcpb.ErrMessageNotFound},
	{shard.ErrNotSender, lcpb.ErrMessageOwnershipRequired},
	{shard.ErrUpdateForbidden, lcpb.ErrConversationUpdateRejected},
	{shard.ErrConvExists, lcpb.ErrConversationAPIFailed},
	{shard.ErrBadCommand, lcpb.ErrConversationAPIFailed},
	{errMalformed, lcpb.ErrInternal},
	{errUnsupported, lcpb.ErrInternal},
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
