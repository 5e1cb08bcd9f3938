package main

import (
	"flag"
	"log/slog"
	"net"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/netem"
)

func netemFlag(fs *flag.FlagSet, file *string) {
	fs.StringVar(file, "test-netem", "", "TEST HOOK (relaymesh lab): shape the mesh socket by this netem rules file (latency, loss, partitions between regions), reloaded when it changes; FILE.ack.<node> names the generation applied")
}

// withNetem, when file is set, watches the rules file and adds a mesh
// option that runs the node's socket through a netem.Conn under those
// rules. stop ends the watcher.
func withNetem(file, node string, log *slog.Logger, opts *[]mesh.ListenOption) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	tab := new(netem.Table)
	w, err := netem.Watch(file, file+".ack."+node, tab, 0, log.With("part", "netem"))
	if err != nil {
		return nil, err
	}
	*opts = append(*opts, mesh.WithPacketConn(func(u *net.UDPConn) net.PacketConn {
		return netem.NewConn(u, netem.Config{Table: tab})
	}))
	return w.Close, nil
}
