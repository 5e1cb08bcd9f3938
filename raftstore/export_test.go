package raftstore

// LogStoreForTest exposes the replica's log store to external tests.
func (n *Node) LogStoreForTest() *LogStore { return n.logs }
