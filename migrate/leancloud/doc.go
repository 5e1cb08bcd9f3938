// Package leancloud brings a LeanCloud IM app's data to relaymesh
// (`relaymesh import leancloud`, issue 12; docs/MIGRATING-FROM-LEANCLOUD.md).
//
// It reads the console's data export of _Conversation (JSON Lines, one
// row a line, as the console's 数据导出 delivers it; a JSON array or
// {"results":[…]} as the storage API answers are read too) and the
// message history of each conversation, fetched through LeanCloud's REST
// history API with the app's master key (GET
// /1.2/rtm/{conversations|chatrooms}/{id}/messages, newest first, 1000 a
// page, the next page from the last row's timestamp and msg-id) or read
// from files saved by an earlier fetch (--save). It writes them to a
// running relaymesh through the import API (POST /1.2/rtm/import/…,
// master key; rest/import.go), which stores them through the shard's raft
// log with their own ids and timestamps.
//
// Histories are fetched and imported by Config.Parallel workers, one
// conversation each at a time. Everything is streamed: the export and the history files are decoded a
// row at a time (rows over MaxRowBytes are reported and skipped), and
// rows go out in bounded batches; what is kept in memory is the set of
// conversation ids of the export. Each bad row (malformed JSON, a missing
// or mistyped field, an oversized attribute object, a message of a
// conversation not in the export) is a Problem with its file and line,
// never a crash; the import goes on with the others.
//
// Re-running changes nothing: the server keeps what exists and skips
// message ids it holds. A state file records finished conversations and
// files, so an interrupted run resumes where it stopped; what it sent
// before it stopped and did not record is sent again and skipped by the
// server.
//
// The package talks HTTP only; it imports nothing of the server.
package leancloud
