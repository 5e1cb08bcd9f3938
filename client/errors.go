package client

import (
	"errors"
	"fmt"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Error is a LeanCloud error: an error reply (cmd=error), a failed ack, or a
// refused session. Match it with errors.As; Code is one of the lcpb.Err*
// codes (e.g. lcpb.ErrSessionConflict).
type Error struct {
	Code    int32
	Reason  string
	AppCode int32    // set by app hooks, 0 if absent
	Detail  string   // optional server detail
	Pids    []string // for partial failures (failedPids)
}

func (e *Error) Error() string {
	s := fmt.Sprintf("client: leancloud error %d %s", e.Code, lcpb.ErrorName(e.Code))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func errorFromCommand(ec *lcpb.ErrorCommand) *Error {
	if ec == nil {
		return &Error{Code: lcpb.ErrInternal, Reason: "error reply without errorMessage"}
	}
	return &Error{Code: ec.GetCode(), Reason: ec.GetReason(), AppCode: ec.GetAppCode(),
		Detail: ec.GetDetail(), Pids: ec.GetPids()}
}

// Sentinel errors, classified with errors.Is.
var (
	// ErrConnectionLost fails requests in flight when the connection drops.
	// It is retryable: the client reconnects on its own.
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrTimeout is returned when no reply came within Options.RequestTimeout.
	ErrTimeout = errors.New("client: request timed out")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("client: closed")
	// ErrSessionClosed is returned after the server ended the session
	// (session/closed, e.g. kicked with 4111); it wraps the *Error.
	ErrSessionClosed = errors.New("client: session closed by server")
	// ErrProtocol reports a reply the client cannot use.
	ErrProtocol = errors.New("client: protocol error")
)

// Retryable reports whether err is transient: the connection was lost or
// the request timed out. A retried Send should reuse SendOptions.DT.
func Retryable(err error) bool {
	return errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrTimeout)
}
