package catalog

// DefaultShard names the one shard of a region today: every conversation
// of every app is placed in it. A core keeps its replica under
// <data>/DefaultShard (cluster.CoreConfig.DataDir), so the name is part of
// a node's data layout and never changes for existing data.
const DefaultShard = "shard-0"
