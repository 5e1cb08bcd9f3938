package edge

import (
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// CloseApp ends every session of appID on this edge, for an app that was
// deleted (`relaymesh admin app delete`; cluster/appsync.go calls it once
// the registry no longer serves the app). Each client gets session/closed
// with code 4100 (APP_NOT_AVAILABLE; the SDKs do not reconnect on a 41xx
// close, and a reopen would be refused with 4100 anyway), and its core an
// explicit CLOSE (no will messages). It waits for the cores' answers, each
// within the backend timeout, and returns how many sessions it ended.
func (s *Server) CloseApp(appID string) int {
	var list []*session
	s.mu.Lock()
	for k, set := range s.peers {
		if k.app == appID {
			for ss := range set {
				list = append(list, ss)
			}
		}
	}
	s.mu.Unlock()
	n := 0
	for _, ss := range list {
		b, err := proto.Marshal(&lcpb.GenericCommand{
			Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(), PeerId: proto.String(ss.peerID),
			SessionMessage: &lcpb.SessionCommand{Code: proto.Int32(lcpb.ErrAppNotAvailable), Reason: proto.String(lcpb.ErrorName(lcpb.ErrAppNotAvailable))},
		})
		if err != nil {
			continue
		}
		ss.c.deliver(ss, outFrame{b: b, p: pq.High}, true)
		if s.unbind(ss) {
			ss.c.closeSession(ss, explicitCloseCmd)
			n++
		}
	}
	return n
}
