package lcpb

import (
	"slices"

	"google.golang.org/protobuf/proto"
)

// LeanCloud error codes, as the official SDK names them (leancloud-realtime
// 4.3.1 src/error.js). Every client-facing rejection uses one of these.
const (
	ErrAppNotAvailable            = 4100
	ErrSignatureFailed            = 4102
	ErrInvalidLogin               = 4103
	ErrSessionRequired            = 4105
	ErrReadTimeout                = 4107
	ErrLoginTimeout               = 4108
	ErrFrameTooLong               = 4109
	ErrInvalidOrigin              = 4110
	ErrSessionConflict            = 4111
	ErrSessionTokenExpired        = 4112
	ErrAppQuotaExceeded           = 4113
	ErrMessageSentQuotaExceeded   = 4116
	ErrInternal                   = 4200
	ErrConversationAPIFailed      = 4301
	ErrConversationSignature      = 4302
	ErrConversationNotFound       = 4303
	ErrConversationFull           = 4304
	ErrConversationRejectedByApp  = 4305
	ErrConversationUpdateFailed   = 4306
	ErrConversationReadOnly       = 4307
	ErrConversationNotAllowed     = 4308
	ErrConversationUpdateRejected = 4309
	ErrConversationQueryFailed    = 4310
	ErrConversationLogFailed      = 4311
	ErrConversationLogRejected    = 4312
	ErrSystemConvRequired         = 4313
	ErrNormalConvRequired         = 4314
	ErrConversationBlacklisted    = 4315
	ErrTransientConvRequired      = 4316
	ErrConvMembershipRequired     = 4317
	ErrConversationAPIQuota       = 4318
	ErrTemporaryConvExpired       = 4323
	ErrInvalidMessagingTarget     = 4401
	ErrMessageRejectedByApp       = 4402
	ErrMessageOwnershipRequired   = 4403
	ErrMessageNotFound            = 4404
	ErrMessageUpdateRejected      = 4405
	ErrMessageEditDisabled        = 4406
	ErrMessageRecallDisabled      = 4407
	ErrOwnerPromotionNotAllowed   = 5130
	// ErrBlacklistSignature is LeanCloud's code for a failed blacklist
	// signature (REST-AND-HOOKS.md §4); the 4.3.1 SDK has no name for it.
	ErrBlacklistSignature = 4546
)

var errorNames = map[int32]string{
	ErrAppNotAvailable:            "APP_NOT_AVAILABLE",
	ErrSignatureFailed:            "SIGNATURE_FAILED",
	ErrInvalidLogin:               "INVALID_LOGIN",
	ErrSessionRequired:            "SESSION_REQUIRED",
	ErrReadTimeout:                "READ_TIMEOUT",
	ErrLoginTimeout:               "LOGIN_TIMEOUT",
	ErrFrameTooLong:               "FRAME_TOO_LONG",
	ErrInvalidOrigin:              "INVALID_ORIGIN",
	ErrSessionConflict:            "SESSION_CONFLICT",
	ErrSessionTokenExpired:        "SESSION_TOKEN_EXPIRED",
	ErrAppQuotaExceeded:           "APP_QUOTA_EXCEEDED",
	ErrMessageSentQuotaExceeded:   "MESSAGE_SENT_QUOTA_EXCEEDED",
	ErrInternal:                   "INTERNAL_ERROR",
	ErrConversationAPIFailed:      "CONVERSATION_API_FAILED",
	ErrConversationSignature:      "CONVERSATION_SIGNATURE_FAILED",
	ErrConversationNotFound:       "CONVERSATION_NOT_FOUND",
	ErrConversationFull:           "CONVERSATION_FULL",
	ErrConversationRejectedByApp:  "CONVERSATION_REJECTED_BY_APP",
	ErrConversationUpdateFailed:   "CONVERSATION_UPDATE_FAILED",
	ErrConversationReadOnly:       "CONVERSATION_READ_ONLY",
	ErrConversationNotAllowed:     "CONVERSATION_NOT_ALLOWED",
	ErrConversationUpdateRejected: "CONVERSATION_UPDATE_REJECTED",
	ErrConversationQueryFailed:    "CONVERSATION_QUERY_FAILED",
	ErrConversationLogFailed:      "CONVERSATION_LOG_FAILED",
	ErrConversationLogRejected:    "CONVERSATION_LOG_REJECTED",
	ErrSystemConvRequired:         "SYSTEM_CONVERSATION_REQUIRED",
	ErrNormalConvRequired:         "NORMAL_CONVERSATION_REQUIRED",
	ErrConversationBlacklisted:    "CONVERSATION_BLACKLISTED",
	ErrTransientConvRequired:      "TRANSIENT_CONVERSATION_REQUIRED",
	ErrConvMembershipRequired:     "CONVERSATION_MEMBERSHIP_REQUIRED",
	ErrConversationAPIQuota:       "CONVERSATION_API_QUOTA_EXCEEDED",
	ErrTemporaryConvExpired:       "TEMPORARY_CONVERSATION_EXPIRED",
	ErrInvalidMessagingTarget:     "INVALID_MESSAGING_TARGET",
	ErrMessageRejectedByApp:       "MESSAGE_REJECTED_BY_APP",
	ErrMessageOwnershipRequired:   "MESSAGE_OWNERSHIP_REQUIRED",
	ErrMessageNotFound:            "MESSAGE_NOT_FOUND",
	ErrMessageUpdateRejected:      "MESSAGE_UPDATE_REJECTED_BY_APP",
	ErrMessageEditDisabled:        "MESSAGE_EDIT_DISABLED",
	ErrMessageRecallDisabled:      "MESSAGE_RECALL_DISABLED",
	ErrOwnerPromotionNotAllowed:   "OWNER_PROMOTION_NOT_ALLOWED",
	ErrBlacklistSignature:         "BLACKLIST_SIGNATURE_FAILED",
}

// ErrorName returns the SDK's name for a code, or "UNKNOWN_ERROR".
func ErrorName(code int32) string {
	if n, ok := errorNames[code]; ok {
		return n
	}
	return "UNKNOWN_ERROR"
}

// ErrorCodes returns the codes ErrorName knows, in ascending order.
func ErrorCodes() []int32 {
	out := make([]int32, 0, len(errorNames))
	for c := range errorNames {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// NewError builds the reply that rejects request i (nil for a push) with a
// LeanCloud error. reason is required by proto2 and by the native SDKs, so
// an empty one is replaced with the code's name.
func NewError(i *int32, peerID string, code int32, reason string) *GenericCommand {
	if reason == "" {
		reason = ErrorName(code)
	}
	c := &GenericCommand{
		Cmd:          CommandType_error.Enum(),
		ErrorMessage: &ErrorCommand{Code: proto.Int32(code), Reason: proto.String(reason)},
	}
	if i != nil {
		c.I = proto.Int32(*i)
	}
	if peerID != "" {
		c.PeerId = proto.String(peerID)
	}
	return c
}

// ServiceIM is GenericCommand.service for IM pushes; Swift and OC drop pushes
// without it (NATIVE-SDKS.md §4).
const ServiceIM = 2
