package meshpb

// MethodAdminOps is the rpc OpsRequest -> OpsReply (JSON) that operator
// tooling (`relaymesh admin`, an admin certificate: mesh.RoleAdmin) calls
// on any core; no other role may call it (cluster/admin.go serves it).
//
// Every core answers for its own replicas. A change (transfer-leader,
// add-replica, remove-replica) and a conversation read are done by the
// replica that leads the group: a core whose replica does not lead answers
// not_leader with the leader it knows, and the caller asks that one (the
// method is admin-only, so cores do not forward it among themselves).
//
//	status            NodeStatus: the core, the cores it knows, and each
//	                  of its replicas (shards, catalog) as raft sees it
//	transfer-leader   shard (or group "catalog"): raft leadership transfer,
//	                  to node when set (raft server id or mesh address)
//	add-replica       shard: node (raft server id) at addr joins as a
//	                  voter, or a non-voter with nonvoter
//	remove-replica    shard: node leaves; the last voter never, the
//	                  leader only with force
//	conversation      app, cid: where the conversation lives, its leader
//	                  and metadata (read on the shard's leader)
//
// History: version 1 (issue 12, Day-2 operations).
const MethodAdminOps = "admin-ops"

// Ops of an OpsRequest.
const (
	OpStatus         = "status"
	OpTransferLeader = "transfer-leader"
	OpAddReplica     = "add-replica"
	OpRemoveReplica  = "remove-replica"
	OpConversation   = "conversation"
)

// GroupCatalog names the catalog's raft group in OpsRequest.Group and
// GroupStatus.Group; shards are "shard".
const (
	GroupShard   = "shard"
	GroupCatalog = "catalog"
)

// OpsRequest is one admin operation.
type OpsRequest struct {
	Op       string `json:"op"`
	Group    string `json:"group,omitempty"` // "" or "shard": Shard; "catalog"
	Shard    int    `json:"shard,omitempty"`
	Node     string `json:"node,omitempty"` // raft server id (or, for transfer-leader, its address)
	Addr     string `json:"addr,omitempty"` // mesh address (add-replica)
	Nonvoter bool   `json:"nonvoter,omitempty"`
	Force    bool   `json:"force,omitempty"`
	App      string `json:"app,omitempty"`
	CID      string `json:"cid,omitempty"`

	AppChange *AppChange `json:"app_change,omitempty"` // app-set (apps.go)
}

// OpsReply answers an OpsRequest: Err set (a refusal or failure, one
// line), or NotLeader with the Leader's mesh address as this core knows it
// ("" when it knows none), or the op's result.
type OpsReply struct {
	Err       string `json:"err,omitempty"`
	NotLeader bool   `json:"not_leader,omitempty"`
	Leader    string `json:"leader,omitempty"`

	Status       *NodeStatus  `json:"status,omitempty"`       // status
	Group        *GroupStatus `json:"group,omitempty"`        // after a change: the group on its (old) leader
	Conversation *ConvInfo    `json:"conversation,omitempty"` // conversation

	Apps *AppsView `json:"apps,omitempty"` // app-list (apps.go)
	App  *AppEntry `json:"app,omitempty"`  // app-set, app-rotate-master-key, app-delete
}

// NodeStatus is one core's view of itself.
type NodeStatus struct {
	Node   string         `json:"node"` // [core] node_id
	Addr   string         `json:"addr"` // mesh address
	Region int            `json:"region"`
	Cores  []string       `json:"cores,omitempty"`  // this region's cores' mesh addresses ([core] peers), itself included
	Remote []RemoteCores  `json:"remote,omitempty"` // other regions' cores ([[core.remote_regions]])
	Groups []*GroupStatus `json:"groups"`           // shards by number, then the catalog
}

// RemoteCores are another region's cores.
type RemoteCores struct {
	Region int      `json:"region"`
	Cores  []string `json:"cores"`
}

// GroupStatus is one replica of a raft group as its core sees it.
type GroupStatus struct {
	Group        string         `json:"group"` // "shard" or "catalog"
	Shard        int            `json:"shard"`
	Region       int            `json:"region"`
	State        string         `json:"state"` // Leader, Follower, Candidate, Shutdown
	Leader       string         `json:"leader,omitempty"`
	LeaderID     string         `json:"leader_id,omitempty"`
	Term         uint64         `json:"term"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"` // processed by raft (commands applied to the state DB, configuration entries)
	LastIndex    uint64         `json:"last_index"`
	Servers      []ServerStatus `json:"servers,omitempty"` // the group's configuration as this replica has it
	Err          string         `json:"err,omitempty"`     // the replica failed (raftstore.Node.Err)
}

// ServerStatus is one server of a raft configuration.
type ServerStatus struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Voter bool   `json:"voter"`
}

// ConvInfo is where a conversation lives and its metadata.
type ConvInfo struct {
	App       string `json:"app"`
	CID       string `json:"cid"`
	Region    int    `json:"region"`
	Shard     int    `json:"shard"`
	Leader    string `json:"leader,omitempty"`
	LeaderID  string `json:"leader_id,omitempty"`
	Found     bool   `json:"found"`
	Creator   string `json:"creator,omitempty"`
	Members   int    `json:"members"`
	Kind      string `json:"kind,omitempty"` // normal, transient, system, temporary
	Unique    bool   `json:"unique,omitempty"`
	CreatedAt int64  `json:"created_at,omitempty"`      // ms
	UpdatedAt int64  `json:"updated_at,omitempty"`      // ms
	LastMsgAt int64  `json:"last_message_at,omitempty"` // ms, 0: none
	LastFrom  string `json:"last_from,omitempty"`
}

// GetCores is s.Cores, nil for a nil s.
func (s *NodeStatus) GetCores() []string {
	if s == nil {
		return nil
	}
	return s.Cores
}
