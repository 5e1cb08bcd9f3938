package leancloud

import (
	"encoding/json"
	"fmt"
)

// Message is one row of LeanCloud's REST history API, checked, in the
// import API's shape (rest/import.go ImportMsg):
//
//	{"timestamp":1408008498571,"conv-id":"…","data":"…","from":"…",
//	 "msg-id":"…","is-conv":true,"is-room":false,"to":"…","bin":false,
//	 "from-ip":"…","ack-at":1449683354932}
//
// from-ip, ack-at, is-conv, is-room and to are not kept.
type Message struct {
	MsgID     string `json:"msg-id"`
	From      string `json:"from"`
	Timestamp int64  `json:"timestamp"`
	Data      string `json:"data"`
	Bin       bool   `json:"bin,omitempty"`

	convID string
}

// parseMessage checks one history row.
func parseMessage(raw json.RawMessage) (*Message, error) {
	var row struct {
		MsgID     *string          `json:"msg-id"`
		From      *string          `json:"from"`
		Timestamp *json.Number     `json:"timestamp"`
		Data      *string          `json:"data"`
		Bin       *bool            `json:"bin"`
		ConvID    *string          `json:"conv-id"`
		To        *json.RawMessage `json:"to"`
	}
	if err := json.Unmarshal(raw, &row); err != nil {
		return nil, fmt.Errorf("not a history row: %v", err)
	}
	switch {
	case row.MsgID == nil:
		return nil, fmt.Errorf("no msg-id")
	case row.Timestamp == nil:
		return nil, fmt.Errorf("msg-id %s: no timestamp", *row.MsgID)
	case row.From == nil:
		return nil, fmt.Errorf("msg-id %s: no from", *row.MsgID)
	}
	m := &Message{MsgID: *row.MsgID, From: *row.From}
	if row.ConvID != nil { // absent: the conversation whose history was asked for
		m.convID = *row.ConvID
	}
	if err := checkID("msg-id", m.MsgID); err != nil {
		return nil, err
	}
	ts, err := row.Timestamp.Int64()
	if err != nil || ts <= 0 {
		return nil, fmt.Errorf("msg-id %s: timestamp %s is not milliseconds since 1970", m.MsgID, *row.Timestamp)
	}
	m.Timestamp = ts
	if err := checkClientID(m.From); err != nil {
		return nil, fmt.Errorf("msg-id %s: from: %v", m.MsgID, err)
	}
	if row.Data != nil {
		m.Data = *row.Data
	}
	if len(m.Data) > MaxMessageData {
		return nil, fmt.Errorf("msg-id %s: data is %d bytes, relaymesh imports at most %d", m.MsgID, len(m.Data), MaxMessageData)
	}
	if row.Bin != nil {
		m.Bin = *row.Bin
	}
	return m, nil
}
