package core

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/push"
)

const apnsTok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// openWith logs c in with sm as its session/open.
func (c *client) openWith(sm *lcpb.SessionCommand) {
	c.e.t.Helper()
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), SessionMessage: sm})
	r := c.req(meshpb.ClientRequest_OPEN, b)
	r.DeviceId = sm.GetDeviceId()
	if r.DeviceId == "" {
		r.DeviceId = sm.GetDeviceToken() // as the edge merges them
	}
	rep, err := c.e.core.HandleClient(context.Background(), r)
	if err != nil || rep.GetErrorCode() != 0 {
		c.e.t.Fatalf("open: %v %v", err, rep)
	}
	waitSeenRecords(c.e.t, c.e.core)
}

// logout sends the CLOSE an edge sends for session/close.
func (c *client) logout(deviceID string) {
	c.e.t.Helper()
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum()})
	r := c.req(meshpb.ClientRequest_CLOSE, b)
	r.DeviceId = deviceID
	if _, err := c.e.core.HandleClient(context.Background(), r); err != nil {
		c.e.t.Fatal(err)
	}
}

func (e *env) deviceBy(kind, ident string) *shard.Device {
	e.t.Helper()
	d, err := shard.DeviceByIdent(e.rep.State(), testApp, kind, ident)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) deviceAdmin(a *meshpb.AdminRequest) *meshpb.ClientReply {
	e.t.Helper()
	rep, err := e.core.HandleClient(context.Background(), &meshpb.ClientRequest{Kind: meshpb.ClientRequest_ADMIN, AppId: testApp, Admin: a})
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

func TestDeviceBindingAtLogin(t *testing.T) {
	e := newEnv(t)
	java := e.client("bob")
	java.config = 175 // bits 0,1,2,3,5,7: autoBindDeviceIDAndInstallation
	java.openWith(&lcpb.SessionCommand{DeviceId: proto.String("5f3c2a-java-installation"), ConfigBitmap: proto.Int64(175)})
	if d := e.deviceBy(shard.IdentInstallation, "5f3c2a-java-installation"); d == nil || d.Type != "android" || !slices.Equal(d.Clients, []string{"bob"}) {
		t.Fatalf("Java login: got %+v, want an android device bound to bob", d)
	}
	// The same login again proposes nothing.
	before := e.rep.proposed.Load()
	java2 := e.client("bob")
	java2.config = 175
	java2.openWith(&lcpb.SessionCommand{DeviceId: proto.String("5f3c2a-java-installation"), ConfigBitmap: proto.Int64(175)})
	if n := e.rep.proposed.Load() - before; n != 0 {
		t.Errorf("a repeated login proposed %d commands, want 0", n)
	}

	swift := e.client("carol")
	swift.openWith(&lcpb.SessionCommand{DeviceToken: proto.String(strings.ToUpper(apnsTok)), ConfigBitmap: proto.Int64(187)})
	if d := e.deviceBy(shard.IdentToken, apnsTok); d == nil || d.Type != "ios" || !slices.Equal(d.Clients, []string{"carol"}) {
		t.Fatalf("Swift login: got %+v, want an ios device bound to carol (token lower-cased)", d)
	}

	// Not bound: the JS SDK's deviceId (no bit 2) and a Swift UDID.
	js := e.client("dave")
	js.openWith(&lcpb.SessionCommand{DeviceId: proto.String("js-uuid"), ConfigBitmap: proto.Int64(59)})
	udid := e.client("erin")
	udid.openWith(&lcpb.SessionCommand{DeviceToken: proto.String("6F9619FF-8B86-D011-B42D-00C04FC964FF"), ConfigBitmap: proto.Int64(187)})
	if d := e.deviceBy(shard.IdentInstallation, "js-uuid"); d != nil {
		t.Errorf("the JS deviceId was bound: %+v", d)
	}
	if d := e.deviceBy(shard.IdentToken, "6f9619ff-8b86-d011-b42d-00c04fc964ff"); d != nil {
		t.Errorf("a UDID was bound: %+v", d)
	}

	// Logout unbinds (the placeholder goes); a dropped connection does not.
	swift.logout(apnsTok)
	if d := e.deviceBy(shard.IdentToken, apnsTok); d != nil {
		t.Errorf("after logout: got %+v, want the placeholder gone", d)
	}
	r := java.req(meshpb.ClientRequest_CLOSE, nil) // connection lost
	r.DeviceId = "5f3c2a-java-installation"
	if _, err := e.core.HandleClient(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if d := e.deviceBy(shard.IdentInstallation, "5f3c2a-java-installation"); d == nil || !slices.Equal(d.Clients, []string{"bob"}) {
		t.Errorf("after a dropped connection: got %+v, want bob still bound", d)
	}
}

func TestReportUpload(t *testing.T) {
	e := newEnv(t)
	c := e.client("carol")
	c.config = 187
	c.openWith(&lcpb.SessionCommand{DeviceToken: proto.String("6F9619FF-8B86-D011-B42D-00C04FC964FF"), ConfigBitmap: proto.Int64(187)})
	report := func(typ, data string) *lcpb.GenericCommand {
		return c.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_report.Enum(), Op: lcpb.OpType_upload.Enum(),
			ReportMessage: &lcpb.ReportCommand{Initiative: proto.Bool(true), Type: proto.String(typ), Data: proto.String(data)}})
	}
	g := mustOK(t, report("token", apnsTok))
	if g.GetCmd() != lcpb.CommandType_report || g.GetOp() != lcpb.OpType_uploaded || g.ReportMessage == nil {
		t.Fatalf("reply: got %v, want report/uploaded with a reportMessage", g)
	}
	if d := e.deviceBy(shard.IdentToken, apnsTok); d == nil || !slices.Equal(d.Clients, []string{"carol"}) {
		t.Fatalf("after report/upload: got %+v, want the token bound to carol", d)
	}
	wantError(t, report("token", "not-a-token"), codeInvalidDeviceToken)
	mustOK(t, report("other", "anything"))
}

func TestOfflinePushCarriesDevices(t *testing.T) {
	fp := &fakePush{}
	e := newEnvWith(t, func(c *Config) { c.Push = PushConfig{Provider: fp} })
	// bob: an iOS device with badge 2 (saved over REST), bound by login.
	rep := e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_SAVE,
		Device:       &meshpb.DeviceRecord{DeviceType: "ios", DeviceToken: apnsTok, ApnsTopic: "com.example", Badge: 2},
		DeviceFields: []string{"device_type", "device_token", "apns_topic", "badge"}})
	if rep.GetErrorCode() != 0 || !rep.GetAdmin().GetDeviceCreated() {
		t.Fatalf("save: %v", rep)
	}
	iosID := rep.GetAdmin().GetDevices()[0].GetObjectId()
	bob := e.client("bob")
	bob.openWith(&lcpb.SessionCommand{DeviceToken: proto.String(apnsTok), ConfigBitmap: proto.Int64(187)})
	bob.logout("") // offline, still bound (no device id on this close)
	// carol: an FCM device bound with the master key's channels.
	rep = e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_SAVE, DeviceTrusted: true, DeviceChannelsOp: shard.ChannelsSet,
		Device:       &meshpb.DeviceRecord{DeviceType: "android", InstallationId: "iid-c", RegistrationId: "fcm-c", Vendor: "fcm", Channels: []string{"carol"}},
		DeviceFields: []string{"device_type", "installation_id", "registration_id", "vendor"}})
	fcmID := rep.GetAdmin().GetDevices()[0].GetObjectId()

	alice := e.client("alice")
	alice.open("", false, 0)
	cid := alice.start([]string{"bob", "carol", "dave"}, "", false).ConvMessage.GetCid()
	send := func(pushData string) push.Request {
		t.Helper()
		n := len(fp.requests())
		mustOK(t, alice.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"), PushData: proto.String(pushData)}}))
		waitFor(t, "a push", func() bool { return len(fp.requests()) == n+1 })
		return fp.requests()[n]
	}
	r := send(`{"alert":"new","badge":"Increment"}`)
	slices.SortFunc(r.Devices, func(a, b push.Device) int { return strings.Compare(a.ClientID, b.ClientID) })
	want := []push.Device{
		{ID: iosID, ClientID: "bob", Type: "ios", Token: apnsTok, Topic: "com.example", Badge: 3},
		{ID: fcmID, ClientID: "carol", Type: "android", Token: "fcm-c", Vendor: "fcm"},
	}
	if !slices.Equal(r.Devices, want) || r.Sink == nil || !slices.Equal(r.To, []string{"bob", "carol", "dave"}) {
		t.Fatalf("request: devices %+v sink %v to %v, want %+v", r.Devices, r.Sink, r.To, want)
	}
	// APNs calls bob's token dead: the device goes, the next push has none.
	r.Sink.Invalid(context.Background(), testApp, r.Devices[0], "Unregistered")
	if d := e.deviceBy(shard.IdentToken, apnsTok); d != nil {
		t.Fatalf("the dead device is still there: %+v", d)
	}
	r = send(`{"alert":"again"}`)
	if len(r.Devices) != 1 || r.Devices[0].ID != fcmID || r.Devices[0].Badge != 0 {
		t.Errorf("after the removal: got %+v, want carol's device only", r.Devices)
	}
	if s := e.core.IntegrationStats(); s.DevicesGone != 1 || s.PushDevices != 3 {
		t.Errorf("stats: got %d gone, %d devices, want 1 and 3", s.DevicesGone, s.PushDevices)
	}
}

func TestAdminDevices(t *testing.T) {
	e := newEnv(t)
	rep := e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_SAVE,
		Device: &meshpb.DeviceRecord{DeviceType: "ios"}, DeviceFields: []string{"device_type"}})
	if rep.GetErrorCode() != codeBadParams {
		t.Errorf("save without a token: got %d %s, want %d", rep.GetErrorCode(), rep.GetErrorReason(), codeBadParams)
	}
	rep = e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_GET, DeviceId: "nope"})
	if rep.GetErrorCode() != codeObjectNotFound {
		t.Errorf("get unknown: got %d, want %d", rep.GetErrorCode(), codeObjectNotFound)
	}
	for i, typ := range []string{"ios", "android", "ios"} {
		rep = e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_SAVE, Device: &meshpb.DeviceRecord{
			DeviceType: typ, InstallationId: string(rune('a' + i))}, DeviceFields: []string{"device_type", "installation_id"}})
		if rep.GetErrorCode() != 0 {
			t.Fatal(rep)
		}
	}
	rep = e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_LIST, DeviceWhere: &meshpb.DeviceRecord{DeviceType: "ios"},
		DeviceWhereFields: []string{"device_type"}, Limit: 1, DeviceSkip: 1})
	if ds := rep.GetAdmin().GetDevices(); len(ds) != 1 || ds[0].GetDeviceType() != "ios" {
		t.Errorf("list: got %v, want the second ios device", ds)
	}
	id := rep.GetAdmin().GetDevices()[0].GetObjectId()
	if rep = e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_DELETE, DeviceId: id}); rep.GetErrorCode() != 0 {
		t.Fatal(rep)
	}
	if rep = e.deviceAdmin(&meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_GET, DeviceId: id}); rep.GetErrorCode() != codeObjectNotFound {
		t.Errorf("get deleted: got %v", rep)
	}
}
