//go:build !linux

package edge

import "errors"

// Without epoll, WebSockets are read by a goroutine each (coder/websocket).

func pollerAvailable() bool { return false }

var errNoPoller = errors.New("edge: no epoll poller on this platform")

func (w *rawWS) arm() error                    { return errNoPoller }
func (w *rawWS) unregister()                   {}
func (w *rawWS) readSome([]byte) (int, error)  { return 0, errNoPoller }
func (w *rawWS) writeSome([]byte) (int, error) { return 0, errNoPoller }
