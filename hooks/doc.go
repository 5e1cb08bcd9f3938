// Package hooks calls an app's IM hooks — LeanCloud's cloud-engine hooks —
// as HTTP webhooks.
//
// # Hooks
//
// Every hook LeanCloud had is supported, with its names, parameters and
// replies (field names as in LeanCloud's docs; see the event and verdict
// types):
//
//	_messageReceived      before delivery; may drop the message or rewrite content, bin, toPeers
//	_messageUpdate        before an edit or recall; may drop it (4405) or rewrite content, bin, toPeers
//	_messageSent          after delivery; reply ignored (call it off the delivery path)
//	_receiversOffline     before offline push; may skip, narrow offlinePeers, set pushMessage, force
//	_conversationStart    before a conversation is created; may reject
//	_conversationStarted  after it was created; reply ignored
//	_conversationAdd      before members join or are invited; may reject
//	_conversationAdded    after they joined or were invited; reply ignored
//	_conversationRemove   before members are kicked; may reject
//	_conversationRemoved  after they left or were kicked; reply ignored
//	_conversationUpdate   before a name, attribute or mute change; may reject or replace attr/mute
//	_clientOnline         after a login; reply ignored
//	_clientOffline        after a session ended (closeCode 1 logout, 2 dropped, 3 tag conflict, 4 kicked); reply ignored
//	_rtmClientSign        before an app user gets a login signature; may refuse (login.go)
//
// A dropped message is refused with LeanCloud's MESSAGE_REJECTED_BY_APP
// (4402), a dropped edit or recall with MESSAGE_UPDATE_REJECTED_BY_APP
// (4405) and a rejected conversation operation with
// CONVERSATION_REJECTED_BY_APP (4305); the hook's own code and detail travel
// with them as the verdict's AppCode and Detail (appCode/appMsg on the wire).
// The hooks whose reply is ignored (notify.go) succeed on any 2xx.
//
// The app's user store (App.UserVerifyURL, login.go) is not a hook but is
// called the same way, signed, with the same timeout; its counters are
// under the name "_userVerify".
//
// # Request
//
// Each call is one HTTP POST of the event as a JSON object to the URL
// configured for the app and hook (App.URLs), or, when only App.BaseURL is
// set, to BaseURL + "/1.1/functions/" + hook name, the path LeanEngine
// serves. Headers:
//
//	Content-Type: application/json
//	X-LC-Id: <appId>
//	X-LC-Hook-Key: <App.HookKey>           only when configured (LeanEngine SDKs require it)
//	X-Relaymesh-Hook: <hook name>
//	X-Relaymesh-Timestamp: <unix time, milliseconds, decimal>
//	X-Relaymesh-Signature: <lower-case hex HMAC-SHA256>   only when App.MasterKey is set
//
// The signature is HMAC-SHA256 keyed with the app's master key over the
// timestamp header's value, a '.', and the exact request body:
//
//	hex(HMAC-SHA256(masterKey, timestamp + "." + body))
//
// A receiver checks it with [Verify] (or recomputes it with [Sign]), and
// should refuse timestamps more than [MaxSkew] away from its clock to stop
// replays.
//
// # Reply
//
// A 2xx reply carries the verdict as a JSON object, either bare or wrapped as
// LeanEngine wraps function results, {"result": {...}}. An empty body or {}
// means default processing. Any other status, a body that is not such an
// object, a body over MaxReplyBytes, a transport error or the per-call
// timeout (Config.Timeout, default 3 s — LeanCloud documents 3 s for
// hooks other than before-save ones and nothing specific to IM) is a failure.
//
// # Failure policy
//
// A failed blocking hook (_messageReceived, _messageUpdate, the four
// conversation hooks and _rtmClientSign) follows the app's policy.
// FailOpen, the default and LeanCloud's default, proceeds as if no hook
// were configured; FailClosed drops the message (4402) or the edit (4405),
// rejects the operation (4305) or refuses the signature, as LeanCloud's
// console switch does. _receiversOffline, _messageSent and the
// notification hooks always fail open.
//
// Every method returns the verdict to apply, whether or not err is nil; a
// non-nil err only reports that the hook failed (it wraps [ErrFailed], and
// also [ErrTimeout] when the call timed out). An app or hook with no URL is
// not called and yields the default verdict with a nil error.
//
// # Counters
//
// Calls, failures, timeouts (a subset of failures) and drops (messages
// dropped and operations rejected, by the hook or by FailClosed) are counted
// per hook name; see [Client.Stats] and [Client.Collector]. Per-call events
// are counted, not logged.
package hooks
