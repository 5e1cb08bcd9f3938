package shard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble"
)

func sp(s string) *string { return &s }

func saveCmd(now int64, op DeviceOp) *Command {
	return &Command{Op: OpDeviceSave, App: app, Now: now, Device: &op}
}

func bindCmd(op Op, now int64, client, kind, ident, newID, typ string) *Command {
	return &Command{Op: op, App: app, From: client, Now: now,
		Device: &DeviceOp{Kind: kind, Ident: ident, NewID: newID, Type: typ}}
}

func (h *harness) device(id string) *Device {
	h.t.Helper()
	d, err := GetDevice(h.db, app, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) clientDevices(cl string) []string {
	h.t.Helper()
	ds, err := ClientDevices(h.db, app, cl)
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	return ids
}

func TestDeviceSaveCreatesAndMatches(t *testing.T) {
	h := newHarness(t)
	r := h.must(saveCmd(1000, DeviceOp{NewID: "d1", Set: DeviceFields{Type: sp("android"), InstallationID: sp("iid-1"),
		TimeZone: sp("Asia/Shanghai"), Extra: json.RawMessage(`{"userObjectId":"u1"}`)}, ChannelsOp: ChannelsSet, Channels: []string{"public", "bob"}}))
	if r.Existing || len(r.Devices) != 1 || r.Devices[0].ID != "d1" {
		t.Fatalf("create: got %+v", r)
	}
	// A POST with the same installationId updates that device.
	r = h.must(saveCmd(2000, DeviceOp{NewID: "d2", Set: DeviceFields{Type: sp("android"), InstallationID: sp("iid-1"),
		RegistrationID: sp("fcm-1"), Vendor: sp("fcm")}}))
	if !r.Existing || r.Devices[0].ID != "d1" {
		t.Fatalf("match: got existing=%v id %s, want d1", r.Existing, r.Devices[0].ID)
	}
	d := h.device("d1")
	want := Device{ID: "d1", Type: "android", InstallationID: "iid-1", RegistrationID: "fcm-1", Vendor: "fcm",
		TimeZone: "Asia/Shanghai", Channels: []string{"bob", "public"}, Extra: json.RawMessage(`{"userObjectId":"u1"}`),
		CreatedAt: 1000, UpdatedAt: 2000}
	if fmt.Sprintf("%+v", *d) != fmt.Sprintf("%+v", want) {
		t.Errorf("device:\n got %+v\nwant %+v", *d, want)
	}
	if h.device("d2") != nil {
		t.Error("the matching POST created a second device")
	}
	for kind, ident := range map[string]string{IdentInstallation: "iid-1", IdentRegistration: "fcm-1"} {
		if got, _ := DeviceByIdent(h.db, app, kind, ident); got == nil || got.ID != "d1" {
			t.Errorf("%s %s: got %v, want d1", kind, ident, got)
		}
	}
	// Channels saved with the app key bind nobody.
	if got := h.clientDevices("bob"); len(got) != 0 {
		t.Errorf("bob's devices after an app-key save: got %v, want none", got)
	}
	// Other app: its own namespace.
	if got, _ := DeviceByIdent(h.db, "app2", IdentInstallation, "iid-1"); got != nil {
		t.Errorf("app2 sees app1's device %s", got.ID)
	}
}

func TestDeviceSaveRefuses(t *testing.T) {
	h := newHarness(t)
	long := string(bytes.Repeat([]byte("a"), MaxDeviceIdent+1))
	tests := []struct {
		name string
		op   DeviceOp
		want error
	}{
		{"no type", DeviceOp{NewID: "x", Set: DeviceFields{Token: sp("t")}}, ErrBadDevice},
		{"bad type", DeviceOp{NewID: "x", Set: DeviceFields{Type: sp("iOS 17"), Token: sp("t")}}, ErrBadDevice},
		{"no identifier", DeviceOp{NewID: "x", Set: DeviceFields{Type: sp("ios")}}, ErrBadDevice},
		{"token too long", DeviceOp{NewID: "x", Set: DeviceFields{Type: sp("ios"), Token: sp(long)}}, ErrBadDevice},
		{"control character", DeviceOp{NewID: "x", Set: DeviceFields{Type: sp("ios"), Token: sp("a\nb")}}, ErrBadDevice},
		{"too many channels", DeviceOp{NewID: "x", Set: DeviceFields{Type: sp("ios"), Token: sp("t")}, ChannelsOp: ChannelsSet,
			Channels: make([]string, MaxDeviceChannels+1)}, ErrBadDevice},
		{"extra not an object", DeviceOp{NewID: "x", Set: DeviceFields{Type: sp("ios"), Token: sp("t"), Extra: json.RawMessage(`[1]`)}}, ErrBadDevice},
		{"unknown id", DeviceOp{ID: "nope", Set: DeviceFields{Badge: new(int64)}}, ErrDeviceNotFound},
		{"no new id", DeviceOp{Set: DeviceFields{Type: sp("ios"), Token: sp("t")}}, ErrBadCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := h.apply(saveCmd(1, tc.op)); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	if n := countKeys(t, h.db); n != 0 {
		t.Errorf("refused saves wrote %d keys", n)
	}
}

func countKeys(t *testing.T, db *pebble.DB) int {
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

func TestDeviceTrustedChannelsBind(t *testing.T) {
	h := newHarness(t)
	h.must(saveCmd(1, DeviceOp{NewID: "d1", Trusted: true, Set: DeviceFields{Type: sp("ios"), Token: sp("tok-1")},
		ChannelsOp: ChannelsSet, Channels: []string{"alice", "bob"}}))
	if a, b := h.clientDevices("alice"), h.clientDevices("bob"); !slices.Equal(a, []string{"d1"}) || !slices.Equal(b, []string{"d1"}) {
		t.Fatalf("after a master-key save: alice %v bob %v, want d1 for both", a, b)
	}
	h.must(saveCmd(2, DeviceOp{ID: "d1", Trusted: true, ChannelsOp: ChannelsRemove, Channels: []string{"alice"}}))
	h.must(saveCmd(3, DeviceOp{ID: "d1", Trusted: true, ChannelsOp: ChannelsAdd, Channels: []string{"carol"}}))
	// An app-key remove changes channels only.
	h.must(saveCmd(4, DeviceOp{ID: "d1", ChannelsOp: ChannelsRemove, Channels: []string{"bob"}}))
	d := h.device("d1")
	if !slices.Equal(d.Channels, []string{"carol"}) || !slices.Equal(d.Clients, []string{"bob", "carol"}) {
		t.Errorf("channels %v clients %v, want [carol] and [bob carol]", d.Channels, d.Clients)
	}
	if a := h.clientDevices("alice"); len(a) != 0 {
		t.Errorf("alice still bound: %v", a)
	}
}

func TestDeviceBindPlaceholderThenSave(t *testing.T) {
	h := newHarness(t)
	// The Java SDK logs in before it saved its installation.
	r := h.must(bindCmd(OpDeviceBind, 10, "bob", IdentInstallation, "iid-7", "p1", "android"))
	if r.Existing || !r.Devices[0].Placeholder {
		t.Fatalf("bind: got %+v, want a new placeholder", r.Devices[0])
	}
	h.must(bindCmd(OpDeviceBind, 11, "bob", IdentInstallation, "iid-7", "p2", "android")) // a second login: same device
	if got := h.clientDevices("bob"); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("bob's devices: got %v, want [p1]", got)
	}
	h.must(saveCmd(20, DeviceOp{NewID: "d9", Set: DeviceFields{Type: sp("android"), InstallationID: sp("iid-7"),
		RegistrationID: sp("fcm-7"), Vendor: sp("fcm")}}))
	d := h.device("p1")
	if d == nil || d.Placeholder || d.RegistrationID != "fcm-7" || !slices.Equal(d.Clients, []string{"bob"}) || d.UpdatedAt != 20 {
		t.Fatalf("after the save: got %+v, want p1 completed, still bound to bob", d)
	}
	// Logout unbinds; a saved device stays.
	h.must(bindCmd(OpDeviceUnbind, 30, "bob", IdentInstallation, "iid-7", "", ""))
	if got := h.clientDevices("bob"); len(got) != 0 || h.device("p1") == nil {
		t.Errorf("after logout: bob's devices %v, device kept %v", got, h.device("p1") != nil)
	}
	// A placeholder goes with its last binding.
	h.must(bindCmd(OpDeviceBind, 40, "carol", IdentToken, "abcd", "p3", "ios"))
	h.must(bindCmd(OpDeviceUnbind, 41, "carol", IdentToken, "abcd", "", ""))
	if h.device("p3") != nil {
		t.Error("an unbound placeholder was kept")
	}
	if d, _ := DeviceByIdent(h.db, app, IdentToken, "abcd"); d != nil {
		t.Error("its token index was kept")
	}
}

func TestDeviceBindCaps(t *testing.T) {
	h := newHarness(t)
	for i := range MaxClientDevices + 2 {
		h.must(bindCmd(OpDeviceBind, int64(100+i), "bob", IdentToken, fmt.Sprintf("tok-%02d", i), fmt.Sprintf("p%02d", i), "ios"))
	}
	got := h.clientDevices("bob")
	if len(got) != MaxClientDevices || got[0] != "p02" {
		t.Errorf("bob's devices: got %d from %v, want the %d newest (p02…)", len(got), got, MaxClientDevices)
	}
	if h.device("p00") != nil || h.device("p01") != nil {
		t.Error("evicted placeholders were kept")
	}
	for i := range MaxDeviceClients + 1 {
		h.must(bindCmd(OpDeviceBind, int64(200+i), fmt.Sprintf("u%02d", i), IdentInstallation, "shared", "s1", "android"))
	}
	d := h.device("s1")
	if len(d.Clients) != MaxDeviceClients || slices.Contains(d.Clients, "u00") || !slices.Contains(d.Clients, fmt.Sprintf("u%02d", MaxDeviceClients)) {
		t.Errorf("shared device clients: got %v, want the %d newest", d.Clients, MaxDeviceClients)
	}
	if got := h.clientDevices("u00"); len(got) != 0 {
		t.Errorf("u00 still bound: %v", got)
	}
}

func TestDeviceDeleteAndIdentMoves(t *testing.T) {
	h := newHarness(t)
	h.must(saveCmd(1, DeviceOp{NewID: "a", Trusted: true, Set: DeviceFields{Type: sp("ios"), Token: sp("tok-a")}, ChannelsOp: ChannelsSet, Channels: []string{"bob"}}))
	// A refusal for an old token does not delete a device re-registered since.
	if r := h.must(&Command{Op: OpDeviceDelete, App: app, Now: 2, Device: &DeviceOp{ID: "a", IfToken: "tok-old"}}); len(r.Devices) != 0 {
		t.Fatal("deleted on a stale token")
	}
	h.must(&Command{Op: OpDeviceDelete, App: app, Now: 3, Device: &DeviceOp{ID: "a", IfToken: "tok-a"}})
	if h.device("a") != nil || len(h.clientDevices("bob")) != 0 {
		t.Fatal("the device or its binding survived the delete")
	}
	if d, _ := DeviceByIdent(h.db, app, IdentToken, "tok-a"); d != nil {
		t.Fatal("its token index survived")
	}
	if _, err := h.apply(&Command{Op: OpDeviceDelete, App: app, Now: 4, Device: &DeviceOp{ID: "a"}}); !errors.Is(err, ErrDeviceNotFound) {
		t.Errorf("second delete: got %v, want ErrDeviceNotFound", err)
	}
	// A token saved on another device moves; a device left with no
	// identifier is deleted.
	h.must(saveCmd(5, DeviceOp{NewID: "x", Set: DeviceFields{Type: sp("ios"), Token: sp("tok-x")}}))
	h.must(saveCmd(6, DeviceOp{NewID: "y", Set: DeviceFields{Type: sp("ios"), InstallationID: sp("iid-y")}}))
	h.must(saveCmd(7, DeviceOp{ID: "y", Set: DeviceFields{Token: sp("tok-x")}}))
	if h.device("x") != nil {
		t.Error("x kept no identifier and was not deleted")
	}
	if d, _ := DeviceByIdent(h.db, app, IdentToken, "tok-x"); d == nil || d.ID != "y" {
		t.Errorf("tok-x: got %v, want y", d)
	}
}

func TestDeviceBadge(t *testing.T) {
	h := newHarness(t)
	h.must(saveCmd(1, DeviceOp{NewID: "a", Set: DeviceFields{Type: sp("ios"), Token: sp("t1"), Badge: func() *int64 { v := int64(4); return &v }()}}))
	r := h.must(&Command{Op: OpDeviceBadge, App: app, Now: 2, Device: &DeviceOp{IDs: []string{"a", "gone"}}})
	if len(r.Devices) != 1 || r.Devices[0].Badge != 5 || h.device("a").Badge != 5 {
		t.Errorf("badge: got %+v, want a at 5", r.Devices)
	}
	h.must(saveCmd(3, DeviceOp{ID: "a", Set: DeviceFields{Badge: new(int64)}})) // the app opened: 0
	if b := h.device("a").Badge; b != 0 {
		t.Errorf("badge after reset: got %d", b)
	}
}

// TestDeviceOpsDeterministic applies one sequence on two replicas and
// compares every key and value.
func TestDeviceOpsDeterministic(t *testing.T) {
	cmds := []*Command{
		bindCmd(OpDeviceBind, 1, "bob", IdentToken, "t1", "p1", "ios"),
		saveCmd(2, DeviceOp{NewID: "d1", Trusted: true, Set: DeviceFields{Type: sp("android"), InstallationID: sp("i1"), Extra: json.RawMessage(`{"b":1,"a":2}`)},
			ChannelsOp: ChannelsSet, Channels: []string{"carol", "bob"}}),
		bindCmd(OpDeviceBind, 3, "carol", IdentInstallation, "i1", "p2", "android"),
		{Op: OpDeviceBadge, App: app, Now: 4, Device: &DeviceOp{IDs: []string{"p1", "d1"}}},
		bindCmd(OpDeviceUnbind, 5, "bob", IdentToken, "t1", "", ""),
	}
	var dumps [2]string
	for i := range dumps {
		h := newHarness(t)
		for _, c := range cmds {
			h.must(c)
		}
		it, _ := h.db.NewIter(nil)
		var buf bytes.Buffer
		for ok := it.First(); ok; ok = it.Next() {
			fmt.Fprintf(&buf, "%q=%q\n", it.Key(), it.Value())
		}
		it.Close()
		dumps[i] = buf.String()
	}
	if dumps[0] != dumps[1] || dumps[0] == "" {
		t.Errorf("replicas differ:\n%s\n---\n%s", dumps[0], dumps[1])
	}
}
