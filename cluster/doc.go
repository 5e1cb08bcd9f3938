// Package cluster wires relaymesh's parts into running roles, and does
// little else: a core (mesh node + shard replica + core service, whose
// mesh handlers are the core's own, core.ServeMesh), an edge (mesh node + WebSocket server + its link to the
// cores, edge/corelink, + REST API) and the dev region that `relaymesh dev`
// runs (one of each in one process, talking QUIC over loopback exactly as
// separate processes would). It also reads the production roles' config
// file (config.go) and builds the integrations it names (integrations.go,
// pushcfg.go).
//
// cmd/relaymesh only parses flags and calls into this package; end-to-end
// tests use it to start real regions on loopback.
package cluster
