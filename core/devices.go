package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/push"
)

// Devices (core/shard/devices.go holds the registry): who gets an offline
// push on which phone.
//
// A session binds its clientId to its device at login, the way each SDK
// says which device it is on:
//
//   - the Java SDK sends deviceId = its installationId with configBitmap
//     bit 2 (autoBindDeviceIDAndInstallation): bound by installationId;
//   - the Swift and Objective-C SDKs send deviceToken = the APNs token (or
//     a UDID while they have none) and, when the token changes later,
//     report/upload{type:"token", data}: bound by deviceToken, when it is
//     an APNs token (hex, at least 64 characters);
//   - the JS SDK sends a per-instance deviceId without bit 2: not bound.
//
// A device the registry does not know yet is created as a placeholder
// (Android for an installationId, iOS for a token), which the app's later
// POST /1.1/installations completes. A session/close (logout) unbinds;
// a dropped connection keeps the binding, which is the point. A login of a
// clientId already bound to the device proposes nothing unless the binding
// is a day old (it refreshes updatedAt, as LeanCloud's SDKs do on app
// start).
//
// Offline push resolves each offline receiver's bound devices and puts
// them in the push.Request; a push service's "this token is dead" comes
// back through deviceSink, which deletes the device unless it registered
// another token meanwhile. A payload whose iOS badge is "Increment" first
// adds one to each Apple device's badge (shard.OpDeviceBadge).

// Registry bounds of the server API.
const (
	defaultDeviceList = 100
	maxDeviceList     = 1000
	deviceRebind      = 24 * time.Hour
	maxDeviceOpWait   = 5 * time.Second
)

// configBindDevice is configBitmap bit 2, autoBindDeviceIDAndInstallation.
const configBindDevice = 1 << 2

var (
	errBadDevice      = errors.New("core: invalid device")
	errDeviceNotFound = errors.New("core: device not found")
)

// LeanCloud storage codes (docs/sdk/other/error-code): the device REST
// API answers with them, and report/upload with a token that is none.
const (
	codeBadParams          = 1 // "Internal server error": LeanCloud's code for bad parameters
	codeObjectNotFound     = 101
	codeInvalidDeviceToken = 114
)

// normToken lower-cases a hex device token so that one written by an SDK
// in upper case and one saved over REST in lower case are the same key.
func normToken(s string) string {
	if push.IsAPNsToken(s) {
		return strings.ToLower(s)
	}
	return s
}

// sessionDevice names the device of a session from its session/open (or,
// without one, the edge's device_id), or ok false.
func sessionDevice(req *meshpb.ClientRequest) (kind, ident, typ string, ok bool) {
	id, cfg := req.GetDeviceId(), req.GetConfigBitmap()
	token := ""
	if len(req.GetCommand()) > 0 && req.GetKind() == meshpb.ClientRequest_OPEN {
		open := new(lcpb.GenericCommand)
		if proto.Unmarshal(req.GetCommand(), open) == nil {
			sm := open.GetSessionMessage()
			id, token = sm.GetDeviceId(), sm.GetDeviceToken()
			if sm.ConfigBitmap != nil {
				cfg = sm.GetConfigBitmap()
			}
		}
	} else if push.IsAPNsToken(id) {
		id, token = "", id
	}
	switch {
	case push.IsAPNsToken(token):
		return shard.IdentToken, strings.ToLower(token), "ios", true
	case id != "" && cfg&configBindDevice != 0:
		return shard.IdentInstallation, id, "android", true
	}
	return "", "", "", false
}

// deviceLogin binds a new session's clientId to its device (OPEN). A
// failure is logged: the login goes on.
func (c *Core) deviceLogin(ctx context.Context, req *meshpb.ClientRequest) {
	kind, ident, typ, ok := sessionDevice(req)
	if !ok {
		return
	}
	if err := c.bindDevice(ctx, req.GetAppId(), req.GetPeerId(), kind, ident, typ); err != nil {
		c.log.Warn("binding a device at login", "app", req.GetAppId(), "peer", req.GetPeerId(), "err", err)
	}
}

// deviceLogout unbinds the device of a session that logged out
// (session/close); a dropped connection keeps its binding.
func (c *Core) deviceLogout(ctx context.Context, req *meshpb.ClientRequest) {
	if !explicitClose(req.GetCommand()) {
		return
	}
	kind, ident, _, ok := sessionDevice(req)
	if !ok {
		return
	}
	app, peer := req.GetAppId(), req.GetPeerId()
	d, err := shard.DeviceByIdent(c.state(), app, kind, ident)
	if err != nil || d == nil || !slices.Contains(d.Clients, peer) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, maxDeviceOpWait)
	defer cancel()
	if _, err := c.proposeDevice(ctx, &shard.Command{Op: shard.OpDeviceUnbind, App: app, From: peer, Now: c.nowMS(),
		Device: &shard.DeviceOp{Kind: kind, Ident: ident}}); err != nil {
		c.log.Warn("unbinding a device at logout", "app", app, "peer", peer, "err", err)
	}
}

// bindDevice binds peer to the device with ident, unless it is bound
// already and was seen within deviceRebind.
func (c *Core) bindDevice(ctx context.Context, app, peer, kind, ident, typ string) error {
	if c.replica == nil || !c.replica.IsLeader() {
		return ErrNotLeader
	}
	d, err := shard.DeviceByIdent(c.state(), app, kind, ident)
	if err != nil {
		return fmt.Errorf("%w: %v", errInternal, err)
	}
	now := c.nowMS()
	if d != nil && slices.Contains(d.Clients, peer) && now-d.UpdatedAt < deviceRebind.Milliseconds() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, maxDeviceOpWait)
	defer cancel()
	_, err = c.proposeDevice(ctx, &shard.Command{Op: shard.OpDeviceBind, App: app, From: peer, Now: now,
		Device: &shard.DeviceOp{Kind: kind, Ident: ident, NewID: newRandomID(), Type: typ}})
	return err
}

// report serves report/upload (the Swift SDK's new APNs token): the token
// is bound to the session's clientId; the reply is report/uploaded with
// the request's i. Other report types are acknowledged and ignored.
func (c *Core) report(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	if r.cmd.GetOp() != lcpb.OpType_upload {
		return nil, fmt.Errorf("%w: report/%v", errUnsupported, r.cmd.GetOp())
	}
	rm := r.cmd.GetReportMessage()
	if rm.GetType() == "token" {
		tok := rm.GetData()
		if !push.IsAPNsToken(tok) {
			return nil, fmt.Errorf("%w: report/upload: not an APNs device token", errBadDeviceToken)
		}
		if err := c.bindDevice(ctx, r.app, r.peer, shard.IdentToken, strings.ToLower(tok), "ios"); err != nil {
			return nil, err
		}
	}
	out := r.reply(lcpb.CommandType_report, lcpb.OpType_uploaded.Enum())
	out.ReportMessage = &lcpb.ReportCommand{}
	return out, nil
}

var errBadDeviceToken = errors.New("core: invalid device token")

// receiverDevices returns the devices bound to the receivers in to, each
// once (a device two receivers share is pushed for the first), skipping
// devices with no token a push service takes.
func (c *Core) receiverDevices(app string, to []string) []push.Device {
	st := c.state()
	seen := map[string]bool{}
	var out []push.Device
	for _, p := range to {
		ds, err := shard.ClientDevices(st, app, p)
		if err != nil {
			c.log.Warn("reading devices", "app", app, "peer", p, "err", err)
			continue
		}
		for _, d := range ds {
			if seen[d.ID] {
				continue
			}
			tok := d.RegistrationID
			if push.IsApple(d.Type) {
				tok = d.Token
			}
			if tok == "" {
				continue
			}
			seen[d.ID] = true
			out = append(out, push.Device{ID: d.ID, ClientID: p, Type: d.Type, Token: tok, Vendor: d.Vendor,
				Topic: d.Topic, TeamID: d.TeamID, Badge: d.Badge})
		}
	}
	return out
}

// incrementBadges adds one to the badge of devs' Apple devices and sets
// their Badge to the new count; on failure Badge is 0 (the push carries
// no badge).
func (c *Core) incrementBadges(ctx context.Context, app string, devs []push.Device) {
	var ids []string
	for i := range devs {
		devs[i].Badge = 0
		if push.IsApple(devs[i].Type) {
			ids = append(ids, devs[i].ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, maxDeviceOpWait)
	defer cancel()
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpDeviceBadge, App: app, Now: c.nowMS(), Device: &shard.DeviceOp{IDs: ids}})
	if err != nil {
		c.log.Warn("incrementing badges", "app", app, "err", err)
		return
	}
	badge := map[string]int64{}
	for _, d := range res.Devices {
		badge[d.ID] = d.Badge
	}
	for i := range devs {
		devs[i].Badge = badge[devs[i].ID]
	}
}

// withDevices is the provider behind the core's push queue: on the queue's
// worker, never on a request path, it adds the receivers' devices to a
// request (and their new badges when the payload increments them) and
// the sink that deletes dead ones, then hands it to the providers.
type withDevices struct {
	c    *Core
	next push.Provider
}

func (w withDevices) Push(ctx context.Context, r push.Request) error {
	c := w.c
	if r.Everyone {
		return w.pushEveryone(ctx, r)
	}
	r.Devices = c.receiverDevices(r.AppID, r.To)
	if len(r.Devices) > 0 && push.NeedsBadge(r.Payload) {
		c.incrementBadges(ctx, r.AppID, r.Devices)
	}
	r.Sink = deviceSink{c}
	c.xstats.pushDevices.Add(int64(len(r.Devices)))
	return w.next.Push(ctx, r)
}

// pushEveryone sends a global broadcast's push to every registered device
// of the app that has a token a push service takes, in requests of at
// most push.MaxDevicesPerRequest devices (an app without devices still
// gets one request, for its webhook). Badges are not incremented: a
// broadcast is no unread message of a conversation.
func (w withDevices) pushEveryone(ctx context.Context, r push.Request) error {
	c := w.c
	var all []push.Device
	err := shard.ScanDevices(c.state(), r.AppID, func(d *shard.Device) bool {
		tok := d.RegistrationID
		if push.IsApple(d.Type) {
			tok = d.Token
		}
		if tok != "" {
			cl := ""
			if len(d.Clients) > 0 {
				cl = d.Clients[0]
			}
			all = append(all, push.Device{ID: d.ID, ClientID: cl, Type: d.Type, Token: tok, Vendor: d.Vendor,
				Topic: d.Topic, TeamID: d.TeamID})
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%w: reading devices: %v", errInternal, err)
	}
	r.Sink = deviceSink{c}
	c.xstats.pushDevices.Add(int64(len(all)))
	var errs []error
	for first := true; first || len(all) > 0; first = false {
		n := min(len(all), push.MaxDevicesPerRequest)
		part := r
		part.Devices, all = all[:n], all[n:]
		errs = append(errs, w.next.Push(ctx, part))
	}
	return errors.Join(errs...)
}

// deviceSink deletes the devices push services call dead.
type deviceSink struct{ c *Core }

// Invalid deletes d unless it has another token by now.
func (s deviceSink) Invalid(ctx context.Context, app string, d push.Device, reason string) {
	c := s.c
	ctx, cancel := context.WithTimeout(ctx, maxDeviceOpWait)
	defer cancel()
	_, err := c.proposeDevice(ctx, &shard.Command{Op: shard.OpDeviceDelete, App: app, Now: c.nowMS(),
		Device: &shard.DeviceOp{ID: d.ID, IfToken: d.Token}})
	switch {
	case err == nil:
		c.xstats.devicesRemoved.Add(1)
	case errors.Is(err, shard.ErrDeviceNotFound):
	default:
		c.log.Warn("removing a dead device", "app", app, "device", d.ID, "reason", reason, "err", err)
	}
}

// adminDevice serves DEVICE_SAVE, DEVICE_GET, DEVICE_DELETE and
// DEVICE_LIST.
func (c *Core) adminDevice(ctx context.Context, app string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	st := c.state()
	switch a.GetOp() {
	case meshpb.AdminRequest_DEVICE_GET:
		d, err := shard.GetDevice(st, app, a.GetDeviceId())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		if d == nil {
			return nil, fmt.Errorf("%w: %s", errDeviceNotFound, a.GetDeviceId())
		}
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Devices: []*meshpb.DeviceRecord{deviceRecord(d)}}}, nil
	case meshpb.AdminRequest_DEVICE_DELETE:
		if a.GetDeviceId() == "" {
			return nil, fmt.Errorf("%w: no device id", errBadDevice)
		}
		if _, err := c.proposeDevice(ctx, &shard.Command{Op: shard.OpDeviceDelete, App: app, Now: c.nowMS(),
			Device: &shard.DeviceOp{ID: a.GetDeviceId()}}); err != nil {
			return nil, err
		}
		return &meshpb.ClientReply{}, nil
	case meshpb.AdminRequest_DEVICE_LIST:
		return c.listDevices(app, a)
	}
	op, err := deviceSaveOp(a)
	if err != nil {
		return nil, err
	}
	res, err := c.proposeDevice(ctx, &shard.Command{Op: shard.OpDeviceSave, App: app, Now: c.nowMS(), Device: op})
	if err != nil {
		return nil, err
	}
	if len(res.Devices) != 1 {
		return nil, fmt.Errorf("%w: save returned %d devices", errInternal, len(res.Devices))
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Devices: []*meshpb.DeviceRecord{deviceRecord(res.Devices[0])},
		DeviceCreated: !res.Existing}}, nil
}

// deviceSaveOp turns a DEVICE_SAVE into the shard's DeviceOp, checked.
func deviceSaveOp(a *meshpb.AdminRequest) (*shard.DeviceOp, error) {
	rec := a.GetDevice()
	op := &shard.DeviceOp{ID: a.GetDeviceId(), NewID: newRandomID(), Trusted: a.GetDeviceTrusted(),
		ChannelsOp: a.GetDeviceChannelsOp(), Channels: rec.GetChannels()}
	if op.ID != "" {
		op.NewID = ""
	}
	switch op.ChannelsOp {
	case "", shard.ChannelsSet, shard.ChannelsAdd, shard.ChannelsRemove:
	default:
		return nil, fmt.Errorf("%w: channels op %q", errBadDevice, op.ChannelsOp)
	}
	f := &op.Set
	for _, name := range a.GetDeviceFields() {
		str := func(v string) *string { return &v }
		switch name {
		case "device_type":
			f.Type = str(rec.GetDeviceType())
		case "device_token":
			f.Token = str(normToken(rec.GetDeviceToken()))
		case "installation_id":
			f.InstallationID = str(rec.GetInstallationId())
		case "registration_id":
			f.RegistrationID = str(rec.GetRegistrationId())
		case "vendor":
			f.Vendor = str(rec.GetVendor())
		case "apns_topic":
			f.Topic = str(rec.GetApnsTopic())
		case "apns_team_id":
			f.TeamID = str(rec.GetApnsTeamId())
		case "device_profile":
			f.Profile = str(rec.GetDeviceProfile())
		case "time_zone":
			f.TimeZone = str(rec.GetTimeZone())
		case "badge":
			b := rec.GetBadge()
			f.Badge = &b
		case "extra":
			f.Extra = rec.GetExtra()
		default:
			return nil, fmt.Errorf("%w: unknown field %q", errBadDevice, name)
		}
	}
	f.BadgeAdd = a.GetDeviceBadgeAdd()
	if err := shard.CheckDeviceFields(*f, op.Channels); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadDevice, err)
	}
	return op, nil
}

// listDevices serves DEVICE_LIST: equality on the where fields given
// (channels: the device has that channel).
func (c *Core) listDevices(app string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	limit := int(a.GetLimit())
	if limit <= 0 {
		limit = defaultDeviceList
	}
	limit = min(limit, maxDeviceList)
	skip := int(max(a.GetDeviceSkip(), 0))
	w := a.GetDeviceWhere()
	match := func(d *shard.Device) bool {
		for _, f := range a.GetDeviceWhereFields() {
			var ok bool
			switch f {
			case "device_type":
				ok = d.Type == w.GetDeviceType()
			case "device_token":
				ok = d.Token == normToken(w.GetDeviceToken())
			case "installation_id":
				ok = d.InstallationID == w.GetInstallationId()
			case "registration_id":
				ok = d.RegistrationID == w.GetRegistrationId()
			case "vendor":
				ok = d.Vendor == w.GetVendor()
			case "channels":
				// As the REST view shows them: channels and bound clientIds.
				ok = len(w.GetChannels()) == 1 && (slices.Contains(d.Channels, w.GetChannels()[0]) || slices.Contains(d.Clients, w.GetChannels()[0]))
			}
			if !ok {
				return false
			}
		}
		return true
	}
	out := &meshpb.AdminReply{}
	err := shard.ScanDevices(c.state(), app, func(d *shard.Device) bool {
		if !match(d) {
			return true
		}
		if skip > 0 {
			skip--
			return true
		}
		out.Devices = append(out.Devices, deviceRecord(d))
		return len(out.Devices) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	return &meshpb.ClientReply{Admin: out}, nil
}

// providerNames are the push providers /metrics always lists.
var providerNames = []string{"apns", "fcm", "webhook", "log"}

var providerDescs = []metric.Desc{
	metric.Counter("relaymesh_push_provider_sent_total", "Pushes a provider's service accepted (devices for apns and fcm, requests otherwise).", "provider"),
	metric.Counter("relaymesh_push_provider_failed_total", "Pushes a provider gave up: refused, or out of retries.", "provider"),
	metric.Counter("relaymesh_push_provider_retried_total", "Attempts after the first.", "provider"),
	metric.Counter("relaymesh_push_provider_invalid_total", "Devices the service called dead, handed over for removal.", "provider"),
	metric.Counter("relaymesh_push_provider_dropped_total", "Devices dropped before an attempt: the provider's queue was full, or shut down.", "provider"),
	metric.Counter("relaymesh_push_provider_skipped_total", "Devices not sent: unusable payload, or another APNs team.", "provider"),
	metric.Gauge("relaymesh_push_provider_waiting", "Devices waiting in the provider's queue now.", "provider"),
}

// sampleProviders gives s each push provider's counters, summed over
// the apps, labelled provider="apns|fcm|webhook|log"; the provider the
// core was given reports them with a method ProviderStats() map[string]
// push.ProviderStats (cluster's per-app router does). Every series exists,
// at zero without push.
func (c *Core) sampleProviders(s metric.Sink) {
	stats := map[string]push.ProviderStats{}
	if p, ok := c.pushProvider.(interface {
		ProviderStats() map[string]push.ProviderStats
	}); ok {
		stats = p.ProviderStats()
	}
	get := []func(push.ProviderStats) int64{ // in providerDescs' order
		func(s push.ProviderStats) int64 { return s.Sent },
		func(s push.ProviderStats) int64 { return s.Failed },
		func(s push.ProviderStats) int64 { return s.Retried },
		func(s push.ProviderStats) int64 { return s.Invalid },
		func(s push.ProviderStats) int64 { return s.Dropped },
		func(s push.ProviderStats) int64 { return s.Skipped },
		func(s push.ProviderStats) int64 { return int64(s.Waiting) },
	}
	for i, d := range providerDescs {
		for _, p := range providerNames {
			s.Add(d, float64(get[i](stats[p])), p)
		}
	}
}

func deviceRecord(d *shard.Device) *meshpb.DeviceRecord {
	return &meshpb.DeviceRecord{
		ObjectId: d.ID, DeviceType: d.Type, DeviceToken: d.Token, InstallationId: d.InstallationID,
		RegistrationId: d.RegistrationID, Vendor: d.Vendor, ApnsTopic: d.Topic, ApnsTeamId: d.TeamID,
		DeviceProfile: d.Profile, TimeZone: d.TimeZone, Badge: d.Badge, Channels: d.Channels, Clients: d.Clients,
		Extra: d.Extra, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
}
