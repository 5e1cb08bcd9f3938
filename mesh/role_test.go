package mesh

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestIssuedCertificatesCarryRoles(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]Role{"core-1": RoleCore, "edge-eu": RoleEdge, "admin": RoleAdmin, "n1": RoleCore} {
		id, err := IssueNode(dir, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := CertRole(id.Cert.Leaf); err != nil || got != want || id.Role != want {
			t.Errorf("%s: role %q (%v), identity %q; want %q", name, got, err, id.Role, want)
		}
	}
	id, err := IssueNodeRole(dir, "tool", RoleAdmin, nil)
	if err != nil || id.Role != RoleAdmin {
		t.Fatalf("IssueNodeRole admin: %v %v", id, err)
	}
	if _, err := IssueNodeRole(dir, "x", Role("root"), nil); err == nil {
		t.Error("an unknown role was issued")
	}
}

// roleless writes a CA-signed node certificate without a role, as
// relaymesh issued them before roles, and returns its identity.
func roleless(t *testing.T, dir, name string) *Identity {
	t.Helper()
	ca, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := nodeFiles(dir, name)
	if err := writeKeyPair(certFile, keyFile, der, key); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(certFile, keyFile, filepath.Join(dir, caCertFile)); !errors.Is(err, ErrNoRole) {
		t.Fatalf("LoadIdentity of a role-less certificate: %v, want ErrNoRole", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &Identity{Name: name, Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, Roots: roots}
}

// TestRolelessCertificateRefused: a CA-signed certificate without a role
// (issued before roles) is refused in the handshake, as client and as
// server; the dev PKI reissues its own old certificates.
func TestRolelessCertificateRefused(t *testing.T) {
	dir := t.TempDir()
	ids, err := EnsureDevPKI(dir, "core-1", "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	old := roleless(t, dir, "edge-old")
	core := listen(t, ids["core-1"])
	var calls atomic.Int32
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		calls.Add(1)
		return req, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := listen(t, old).Call(ctx, core.Addr(), "echo", []byte("x")); err == nil {
		t.Fatal("a role-less client certificate was served")
	}
	oldServer := listen(t, old)
	oldServer.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		t.Error("a role-less server was trusted")
		return req, nil
	})
	edge := listen(t, ids["edge-1"])
	if _, err := edge.Call(ctx, oldServer.Addr(), "echo", []byte("x")); err == nil {
		t.Fatal("a role-less server certificate was trusted")
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times for a role-less peer", n)
	}
	// Positive control: the edge's own certificate is served.
	if got, err := edge.Call(ctx, core.Addr(), "echo", []byte("ok")); err != nil || string(got) != "ok" {
		t.Fatalf("edge call: %q %v", got, err)
	}
	// The dev PKI reissues a role-less certificate of a dev node.
	roleless(t, dir, "core-2")
	again, err := EnsureDevPKI(dir, "core-2")
	if err != nil || again["core-2"].Role != RoleCore {
		t.Fatalf("EnsureDevPKI over a role-less core-2: %v %v", again["core-2"], err)
	}
}

// TestMethodRoles: a method registered for edges refuses an admin with
// ErrForbidden and never runs its handler; stream methods alike.
func TestMethodRoles(t *testing.T) {
	ids := pki(t, "core", "edge", "admin")
	core := listen(t, ids["core"])
	var calls atomic.Int32
	core.HandleRPC("client", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		calls.Add(1)
		return req, nil
	}, RoleEdge)
	core.HandleStream("deliveries", func(ctx context.Context, peer string, s *Stream) {
		calls.Add(1)
	}, RoleEdge)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := listen(t, ids["admin"])
	if _, err := admin.Call(ctx, core.Addr(), "client", []byte("x")); !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin calling an edge-only rpc: %v, want ErrForbidden", err)
	}
	if _, err := admin.OpenStream(ctx, core.Addr(), "deliveries"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin opening an edge-only stream: %v, want ErrForbidden", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("handlers ran %d times for a forbidden role", n)
	}
	if got, err := listen(t, ids["edge"]).Call(ctx, core.Addr(), "client", []byte("ok")); err != nil || string(got) != "ok" {
		t.Fatalf("edge: %q %v", got, err)
	}
}

// TestEdgeCannotJoinRaft runs a real single-node raft on a core's mesh
// node; an edge certificate's raft transport tries AppendEntries (a
// forged log entry) and RequestVote against it: both refused, and the
// core's log and state machine are unchanged. A core certificate's
// transport reaches it (positive control).
func TestEdgeCannotJoinRaft(t *testing.T) {
	ids := pki(t, "core-1", "core-2", "edge-1")
	coreNode := listen(t, ids["core-1"])
	conf := raft.DefaultConfig()
	conf.LocalID = "core-1"
	conf.HeartbeatTimeout, conf.ElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
	conf.LeaderLeaseTimeout, conf.CommitTimeout = 100*time.Millisecond, 10*time.Millisecond
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: "core-1", Output: t.Output(), Level: hclog.Error})
	trans := raft.NewNetworkTransport(coreNode.RaftLayer(), 3, 5*time.Second, t.Output())
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	fsm := &raft.MockFSM{}
	if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "core-1", Address: raft.ServerAddress(coreNode.Addr())}}}); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(conf, fsm, logs, logs, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	deadline := time.Now().Add(10 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Apply([]byte("honest"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	lastBefore, applied := r.LastIndex(), len(fsm.Logs())

	attack := func(id *Identity) error {
		n := listen(t, id)
		tr := raft.NewNetworkTransport(n.RaftLayer(), 1, 2*time.Second, t.Output())
		defer tr.Close()
		var resp raft.AppendEntriesResponse
		err := tr.AppendEntries("core-1", raft.ServerAddress(coreNode.Addr()), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id.Name), Addr: []byte(n.Addr())},
			Term:      r.CurrentTerm() + 10, PrevLogEntry: lastBefore, PrevLogTerm: r.CurrentTerm(), LeaderCommitIndex: lastBefore + 1,
			Entries: []*raft.Log{{Index: lastBefore + 1, Term: r.CurrentTerm() + 10, Type: raft.LogCommand, Data: []byte("forged")}},
		}, &resp)
		if err != nil {
			return err
		}
		var vote raft.RequestVoteResponse
		return tr.RequestVote("core-1", raft.ServerAddress(coreNode.Addr()), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id.Name), Addr: []byte(n.Addr())}, Term: r.CurrentTerm() + 20,
			LastLogIndex: lastBefore + 100, LastLogTerm: r.CurrentTerm() + 20,
		}, &vote)
	}
	if err := attack(ids["edge-1"]); err == nil {
		t.Fatal("an edge certificate's AppendEntries/RequestVote reached the core's raft")
	}
	time.Sleep(200 * time.Millisecond) // let a wrongly accepted entry apply, were there one
	if r.State() != raft.Leader || r.LastIndex() != lastBefore || len(fsm.Logs()) != applied {
		t.Fatalf("after the edge's attempt: state %v last index %d (was %d), applied %d (was %d)",
			r.State(), r.LastIndex(), lastBefore, len(fsm.Logs()), applied)
	}
	// Positive control: a core certificate's transport gets raft answers
	// (the forged entry is then refused by raft itself, for its term).
	if err := attack(ids["core-2"]); err != nil {
		t.Fatalf("core-to-core raft transport: %v", err)
	}
}
