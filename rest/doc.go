// Package rest serves LeanCloud's server REST API for instant messaging
// (REST-AND-HOOKS.md §1) on the edge's HTTP listener, under /1.1/ and
// /1.2/: conversations, members, push mutes, messages (send, history, edit,
// recall), online status, unread counts and kicks, plus the REST calls the
// official SDKs make themselves (GET /1.1/rtm/notifications, notif.go; POST
// /1.1/rtm/sign, usersign.go; GET /1.1/classes/_ConversationMemberInfo).
// docs/REST.md lists every path.
//
// The sign endpoints are the exception to the flow below: they never reach
// a core, but ask the app's user store and _rtmClientSign (Config.Users)
// from the edge and sign with the app's master key.
//
// Flow: each request is authenticated here (X-LC-Id with X-LC-Key or
// X-LC-Sign, or X-LC-IM-Session-Token for the SDK's own calls), turned into
// a meshpb.ClientRequest of kind ADMIN and sent through the edge's core link
// (Backend) to the shard leader, which runs it with the server's authority
// (core/admin.go):
//
//	HTTP request --auth--> ADMIN{op, command: GenericCommand} --Backend.Do--> core
//	HTTP response <--LeanCloud JSON shape-- ClientReply{commands | admin | error_code}
//
// Errors are non-2xx answers with LeanCloud's {"code": n, "error": "..."};
// IM failures carry the IM code (4303, 4404, ...) the core chose, request
// and auth failures the storage API's (1, 107, 119, 401, 429; 142 and 211
// for app-user logins).
//
// Message operations (send, edit, recall) skip the per-session rate limits
// of WebSocket clients but pass a per-app queue (queue.go) admitting
// Limits.SendsPerSecond and holding at most Limits.SendQueue waiting
// requests; beyond that they get 429.
package rest
