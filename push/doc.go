// Package push hands offline-push requests to push providers.
//
// When a message reaches members with no online session (never in
// chatrooms), the caller builds one [Request] per message with [BuildPayload],
// fills in the receivers' registered [Device]s, and passes it to a
// [Provider]. relaymesh ships four:
//
//   - [APNs]: Apple devices, over HTTP/2 with token authentication (an
//     ES256 JWT made from the team's .p8 key, renewed every TokenRefresh);
//   - [FCM]: Android devices registered through Firebase, over the FCM
//     HTTP v1 API with an OAuth2 access token from a service account;
//   - [Webhook]: POSTs the request as JSON to a gateway the operator runs;
//   - [Log]: logs it, for development.
//
// A [Queue] goes in front so that the message path never waits on a
// provider. APNs and FCM have their own queue and workers too: Push queues
// one send per device of their service and returns; each send is retried
// with capped, jittered exponential backoff ([Retry]), and a device whose
// token the service calls invalid is handed to the request's [DeviceSink],
// which removes it. Both translate LeanCloud's push payload
// (payload_device.go).
//
// # Payload
//
// The payload is a JSON object, taken from the first of these that is
// present and usable, in LeanCloud's order (REST-AND-HOOKS.md §2.3, from
// the IM guide's offline-push section: the server's dynamic content beats the
// client's pushData, which beats the console's static template):
//
//  1. the pushMessage returned by the _receiversOffline hook;
//  2. the message's pushData (push_data over REST);
//  3. the app's static template, with ${convId}, ${timestamp} and
//     ${fromClientId} substituted.
//
// Issue 4 had shipped pushData, template, hook; issue 8 restored LeanCloud's
// order, with no switch back: apps migrate from LeanCloud, and their hooks
// expect to win.
//
// pushData or a pushMessage that is a JSON object is used as is; a JSON
// string holding an object is that object; any other string, or pushData that
// is not JSON at all, becomes {"alert": text}; other JSON values are unusable
// and the next source is tried. In a JSON template a placeholder inside a
// string literal is replaced by the JSON-escaped value and one outside any
// string by a JSON value (a string, or a number for ${timestamp}); a template
// that is not a JSON object after substitution is plain text and becomes
// {"alert": text}. With no usable source there is nothing to push.
//
// Top-level keys such as "_profile" and "_apns_team_id" are LeanCloud's
// instructions to the push service; they are passed through for the provider
// to act on and strip.
//
// # Queue
//
// A Queue is bounded. Enqueueing never blocks: when the queue is full the
// oldest waiting request is dropped to make room, and counted. Workers hand
// requests to the provider one at a time each; Close cancels pushes in flight
// and discards (and counts) the requests still waiting.
//
// # Webhook
//
// The Webhook provider POSTs the Request as JSON (fields appId, convId,
// from, to, payload, timestamp, and devices when the receivers have any),
// signed like hook calls (package hooks: X-Relaymesh-Timestamp and
// X-Relaymesh-Signature, HMAC-SHA256 over timestamp + "." + body) when a
// key is configured. Each attempt has a
// timeout; transport errors, timeouts, 429 and 5xx are retried up to
// MaxAttempts in all, after a jittered delay that doubles from Backoff up to
// MaxBackoff; any other non-2xx status fails at once.
package push
