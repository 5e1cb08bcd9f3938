package push

import (
	"context"
	"encoding/json"
	"errors"
)

// Request is one offline push: a message for the members in To who have no
// online session.
type Request struct {
	AppID     string          `json:"appId"`
	ConvID    string          `json:"convId"`
	From      string          `json:"from"`      // sender's clientId
	To        []string        `json:"to"`        // receivers' clientIds
	Payload   json.RawMessage `json:"payload"`   // a JSON object (see BuildPayload)
	Timestamp int64           `json:"timestamp"` // the message's, ms
	// Devices are the registered devices of the receivers in To (none
	// for receivers without one).
	Devices []Device `json:"devices,omitempty"`
	// Everyone: a global broadcast's push, for every registered device
	// of the app (To is empty; the core sends the devices in several
	// requests of at most MaxDevicesPerRequest).
	Everyone bool `json:"everyone,omitempty"`
	// Sink hears which devices a push service called invalid; nil
	// ignores it.
	Sink DeviceSink `json:"-"`
}

// MaxDevicesPerRequest bounds Request.Devices of an Everyone push.
const MaxDevicesPerRequest = 500

// Provider delivers pushes. Push may block; callers that must not wait put a
// Queue in front.
type Provider interface {
	Push(ctx context.Context, r Request) error
}

var (
	// ErrClosed is returned by a Queue after Close.
	ErrClosed = errors.New("push: closed")
	// ErrFailed wraps the last error of a push that failed.
	ErrFailed = errors.New("push: push failed")
	// ErrRejected wraps a non-retryable refusal by the gateway (4xx other
	// than 429).
	ErrRejected = errors.New("push: rejected by gateway")
)
