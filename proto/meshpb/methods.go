package meshpb

// Mesh methods between edges and cores (mesh.Node.HandleRPC, HandleStream;
// the edge's side is edge/corelink, the core's core/mesh.go).
const (
	// MethodClient is the rpc ClientRequest -> ClientReply. A core that
	// does not lead the shard answers not_leader (with the leader it
	// knows) without doing anything.
	MethodClient = "client"
	// MethodDeliveries is the stream an edge opens to every core of its
	// region: EdgeHello, then Presence frames edge -> core; Delivery frames
	// core -> edge (a LinkLeader first, when the core knows the leader).
	MethodDeliveries = "deliveries"
	// MethodShard is the rpc ShardRequest -> ClientReply between the cores
	// of a region: a router core hands a request (or one shard's part of
	// it) to the core that leads the shard (core/router.go). A core that
	// does not lead it answers not_leader with the leader it knows.
	MethodShard = "shard"
	// MethodRegion is the rpc ClientRequest -> ClientReply from a router
	// to a core of another region (region_part set): that core runs the
	// request over its own region's shards (core/regions.go).
	MethodRegion = "region"
	// MethodRegionDeliveries is the stream of RegionDelivery frames one
	// region's core sends to a core of another region: the pushes of
	// messages committed in the first for sessions in the second.
	MethodRegionDeliveries = "region-deliveries"
	// MethodPresenceSummary is the rpc PresenceSummaryRequest ->
	// PresenceSummary: which clientIds have a session in the answering
	// core's region (core/regions.go pulls it from every other region).
	MethodPresenceSummary = "presence-summary"
	// MethodPresenceMark is the rpc PresenceMark -> empty between the
	// cores of one region: a client just logged in in another region.
	MethodPresenceMark = "presence-mark"
	// MethodPresenceAdd is the rpc PresenceAdd -> empty from a region's
	// router to its other cores: a session that just logged in.
	MethodPresenceAdd = "presence-add"
	// MethodRelayEdges is the rpc empty -> JSON array of edge ids between
	// the cores of a region: the edges attached to the answering core's
	// relay. A core that just started asks its region's other cores, and
	// takes other regions' pushes only once those edges have told it
	// their sessions (core/regionwarm.go).
	MethodRelayEdges = "relay-edges"
	// MethodCatalog is the rpc catalog command -> CatalogReply (JSON,
	// cluster/catalog.go) between cores: a core that does not lead the
	// catalog's raft group hands a write to the one that does.
	MethodCatalog = "catalog"
	// MethodCatalogProgress is the rpc empty -> CatalogProgress (JSON,
	// cluster/catalogvoters.go) between cores: how far the answering
	// core's catalog replica is (its raft log's last index and the index
	// it applied). The catalog's leader asks a core before it promotes it
	// to voter, and the planned voters before it demotes one.
	MethodCatalogProgress = "catalog-progress"
	// MethodTokenGeneration is the rpc ClientRequest (app_id, peer_id) ->
	// ClientReply (session_generation) from a router to a core of another
	// region: the client's session-token generation there, which tokens
	// that region issued carry (core/auth.go). A core that does not lead
	// its region's system shard answers not_leader.
	MethodTokenGeneration = "token-generation"
	// MethodRoomCount is the rpc ClientRequest (app_id, admin.cid) ->
	// ClientReply (admin.count, admin.room_members) from a core to a core
	// of another region: the answering region's sessions in the chatroom
	// (each region's relays hold its own sessions' chatrooms).
	MethodRoomCount = "room-count"
	// MethodDeviceOp is the rpc ClientRequest (app_id, command: a shard
	// device command, JSON) -> ClientReply from a region's core to a core
	// of another region: a device change the first region's system shard
	// committed, for the answering region's system shard too
	// (core/devicesync.go). A core that does not lead its region's system
	// shard answers not_leader.
	MethodDeviceOp = "device-op"
	// MethodTagHeld is the rpc ClientRequest (app_id, peer_id, tag,
	// session_chain) -> ClientReply from a router to a core of another
	// region: error_code 4111 (SESSION_CONFLICT) when a session of the
	// client with that tag is open in the answering region and is not of
	// session_chain (any session, when that is 0), else 0. A reconnect is
	// refused when another device holds its tag, in any region
	// (core/router.go). Any core answers (every core of a region mirrors
	// its edges' sessions).
	MethodTagHeld = "tag-held"
)
