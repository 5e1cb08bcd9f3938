// Package cluster wires relaymesh's parts into running roles: a core (shard
// replica + core service on a mesh node), an edge (WebSocket server + link to
// the cores) and the dev region that `relaymesh dev` runs (one of each in one
// process, talking QUIC over loopback exactly as separate processes would).
//
// cmd/relaymesh only parses flags and calls into this package; end-to-end
// tests use it to start real regions on loopback.
package cluster
