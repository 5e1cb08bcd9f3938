package shard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"unicode/utf8"

	"github.com/cockroachdb/pebble"
)

// The device registry: LeanCloud's _Installation rows (the REST API's
// /1.1/installations) and which clientIds each device is bound to, so that
// offline push can find a receiver's devices. It is replicated state like
// any other, so every core pushes to the same devices and a binding
// survives restarts and leader changes.
//
// A device has a deviceType and up to three identifiers, each unique in the
// app: deviceToken (Apple), installationId (LeanCloud's Android SDK) and
// registrationId (FCM and the other Android vendors). Two lists say who it
// belongs to:
//
//   - Channels: LeanCloud's push channels, stored as saved;
//   - Clients: the IM clientIds bound to the device. A session binds its
//     clientId at login (OpDeviceBind: the Java SDK's installationId with
//     configBitmap bit 2, the Apple SDKs' deviceToken, Swift's
//     report/upload) and unbinds it at logout; a save with the master key
//     (Trusted) applies its channel change to the bindings too. A save
//     with only the app key changes channels, never bindings: the app key
//     ships in every copy of the app, so it cannot prove who a clientId is.
//
// Offline push reads Clients (ClientDevices), never Channels. A clientId
// keeps at most MaxClientDevices devices and a device at most
// MaxDeviceClients clientIds; one more evicts the oldest binding, and a
// device a session created (Placeholder) goes when its last binding does.
//
// Keys (one table tag; sub-tables by a short name):
//
//	e app "d" id             -> Device JSON
//	e app "i" kind ident     -> id         kind: "tok", "iid", "rid"
//	e app "c" clientId id    -> bind time (8 bytes, ms)
//
// Every time comes from Command.Now; new ids from DeviceOp.NewID, made by
// the proposer.
const tagDevice = 'e'

// Device ops.
const (
	OpDeviceSave   Op = "device_save"   // create or update an installation (server API)
	OpDeviceDelete Op = "device_delete" // delete one (server API; a push service's refusal)
	OpDeviceBind   Op = "device_bind"   // bind From to the device with an identifier (a login)
	OpDeviceUnbind Op = "device_unbind" // unbind From from it (a logout)
	OpDeviceBadge  Op = "device_badge"  // add one to the badge of devices (an "Increment" push)
)

// Identifier kinds.
const (
	IdentToken        = "tok" // deviceToken
	IdentInstallation = "iid" // installationId
	IdentRegistration = "rid" // registrationId
)

// Registry limits.
const (
	MaxClientDevices   = 16   // devices bound to one clientId
	MaxDeviceClients   = 16   // clientIds bound to one device
	MaxDeviceChannels  = 64   // channels of one device
	MaxChannelBytes    = 128  // one channel name
	MaxDeviceIdent     = 512  // deviceToken, installationId, registrationId
	MaxDeviceField     = 256  // deviceType, vendor, apnsTopic, apnsTeamId, deviceProfile, timeZone
	MaxDeviceExtra     = 4096 // the other columns, as JSON
	MaxDeviceTypeBytes = 16
	MaxBadge           = 1<<31 - 1
)

// Device is one installation and its bindings.
type Device struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	Token          string          `json:"tok,omitempty"` // deviceToken
	InstallationID string          `json:"iid,omitempty"`
	RegistrationID string          `json:"rid,omitempty"`
	Vendor         string          `json:"vnd,omitempty"`
	Topic          string          `json:"topic,omitempty"` // apnsTopic
	TeamID         string          `json:"team,omitempty"`  // apnsTeamId
	Profile        string          `json:"prof,omitempty"`  // deviceProfile
	TimeZone       string          `json:"tz,omitempty"`
	Badge          int64           `json:"badge,omitempty"`
	Channels       []string        `json:"ch,omitempty"` // sorted, unique
	Clients        []string        `json:"cl,omitempty"` // bound clientIds, sorted, unique
	Extra          json.RawMessage `json:"x,omitempty"`  // other columns: a JSON object
	// Placeholder: made by a session's bind, never saved over REST.
	Placeholder bool  `json:"ph,omitempty"`
	CreatedAt   int64 `json:"ca"`
	UpdatedAt   int64 `json:"ua"`
}

// Ident returns the device's identifier of kind.
func (d *Device) Ident(kind string) string {
	switch kind {
	case IdentToken:
		return d.Token
	case IdentInstallation:
		return d.InstallationID
	case IdentRegistration:
		return d.RegistrationID
	}
	return ""
}

func (d *Device) setIdent(kind, v string) {
	switch kind {
	case IdentToken:
		d.Token = v
	case IdentInstallation:
		d.InstallationID = v
	case IdentRegistration:
		d.RegistrationID = v
	}
}

var identKinds = [...]string{IdentInstallation, IdentToken, IdentRegistration}

// DeviceFields are the columns a save sets; nil leaves one as it is, ""
// clears it.
type DeviceFields struct {
	Type           *string `json:"type,omitempty"`
	Token          *string `json:"tok,omitempty"`
	InstallationID *string `json:"iid,omitempty"`
	RegistrationID *string `json:"rid,omitempty"`
	Vendor         *string `json:"vnd,omitempty"`
	Topic          *string `json:"topic,omitempty"`
	TeamID         *string `json:"team,omitempty"`
	Profile        *string `json:"prof,omitempty"`
	TimeZone       *string `json:"tz,omitempty"`
	Badge          *int64  `json:"badge,omitempty"`
	// BadgeAdd is added to the badge ({"__op":"Increment"}).
	BadgeAdd int64 `json:"badd,omitempty"`
	// Extra: columns to set (a JSON object; a null value removes one).
	Extra json.RawMessage `json:"x,omitempty"`
}

// Channel changes of a save.
const (
	ChannelsSet    = "set"
	ChannelsAdd    = "add"
	ChannelsRemove = "remove"
)

// DeviceOp is the device part of a Command.
type DeviceOp struct {
	// save: the device to update ("" for a create-or-match);
	// delete: the device.
	ID string `json:"id,omitempty"`
	// save, bind: the id of a device the command creates.
	NewID string `json:"nid,omitempty"`
	// save
	Set        DeviceFields `json:"set,omitzero"`
	ChannelsOp string       `json:"chop,omitempty"` // "" leaves them
	Channels   []string     `json:"ch,omitempty"`
	// Trusted: the master key saves; the channel change binds too.
	Trusted bool `json:"trusted,omitempty"`
	// bind, unbind: the device by identifier (IdentInstallation or
	// IdentToken); Type is the deviceType of a device the bind creates.
	Kind  string `json:"kind,omitempty"`
	Ident string `json:"ident,omitempty"`
	Type  string `json:"type,omitempty"`
	// delete: only if the device's deviceToken or registrationId is still
	// IfToken (a push service refused that token).
	IfToken string `json:"iftok,omitempty"`
	// badge: the devices.
	IDs []string `json:"ids,omitempty"`
}

// Errors of the registry.
var (
	ErrDeviceNotFound = errors.New("shard: device not found")
	ErrBadDevice      = errors.New("shard: invalid device")
)

func deviceKey(app, id string) []byte { return newKey(tagDevice).str(app).str("d").str(id) }
func devicePrefix(app string) []byte  { return newKey(tagDevice).str(app).str("d") }
func identKey(app, kind, ident string) []byte {
	return newKey(tagDevice).str(app).str("i").str(kind).str(ident)
}
func bindPrefix(app, client string) []byte { return newKey(tagDevice).str(app).str("c").str(client) }
func bindKey(app, client, id string) []byte {
	return keyBuf(bindPrefix(app, client)).str(id)
}

// CheckDeviceFields validates what a save sets, the same way on the
// proposer (to answer the caller) and in Apply.
func CheckDeviceFields(f DeviceFields, channels []string) error {
	for _, s := range []struct {
		name string
		v    *string
		max  int
	}{{"deviceType", f.Type, MaxDeviceTypeBytes}, {"deviceToken", f.Token, MaxDeviceIdent},
		{"installationId", f.InstallationID, MaxDeviceIdent}, {"registrationId", f.RegistrationID, MaxDeviceIdent},
		{"vendor", f.Vendor, MaxDeviceField}, {"apnsTopic", f.Topic, MaxDeviceField}, {"apnsTeamId", f.TeamID, MaxDeviceField},
		{"deviceProfile", f.Profile, MaxDeviceField}, {"timeZone", f.TimeZone, MaxDeviceField}} {
		if s.v == nil {
			continue
		}
		if len(*s.v) > s.max || !printable(*s.v) {
			return fmt.Errorf("%w: %s: at most %d printable bytes", ErrBadDevice, s.name, s.max)
		}
	}
	if f.Type != nil && !validType(*f.Type) {
		return fmt.Errorf("%w: deviceType %q: 1-%d lower-case letters", ErrBadDevice, *f.Type, MaxDeviceTypeBytes)
	}
	if f.Badge != nil && (*f.Badge < 0 || *f.Badge > MaxBadge) {
		return fmt.Errorf("%w: badge out of range", ErrBadDevice)
	}
	if f.BadgeAdd < -MaxBadge || f.BadgeAdd > MaxBadge {
		return fmt.Errorf("%w: badge increment out of range", ErrBadDevice)
	}
	if len(f.Extra) > MaxDeviceExtra {
		return fmt.Errorf("%w: other columns: at most %d bytes of JSON", ErrBadDevice, MaxDeviceExtra)
	}
	if len(f.Extra) > 0 && !isJSONObject(f.Extra) {
		return fmt.Errorf("%w: other columns must be a JSON object", ErrBadDevice)
	}
	if len(channels) > MaxDeviceChannels {
		return fmt.Errorf("%w: at most %d channels", ErrBadDevice, MaxDeviceChannels)
	}
	for _, ch := range channels {
		if len(ch) > MaxChannelBytes || !printable(ch) {
			return fmt.Errorf("%w: channel: at most %d printable bytes", ErrBadDevice, MaxChannelBytes)
		}
	}
	return nil
}

// printable: valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func validType(s string) bool {
	if s == "" || len(s) > MaxDeviceTypeBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}

// deviceApply runs the device ops; ok is false for any other op.
func (a *applier) deviceApply() (res *Result, serr *Error, ok bool) {
	switch a.c.Op {
	case OpDeviceSave:
		res, serr = a.deviceSave()
	case OpDeviceDelete:
		res, serr = a.deviceDelete()
	case OpDeviceBind:
		res, serr = a.deviceBind(true)
	case OpDeviceUnbind:
		res, serr = a.deviceBind(false)
	case OpDeviceBadge:
		res, serr = a.deviceBadge()
	default:
		return nil, nil, false
	}
	return res, serr, true
}

func (a *applier) dop() *DeviceOp {
	if a.c.Device == nil {
		return &DeviceOp{}
	}
	return a.c.Device
}

// getDevice loads a device inside Apply; nil if absent.
func (a *applier) getDevice(id string) (*Device, *Error) {
	d, err := GetDevice(a.b, a.c.App, id)
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	return d, nil
}

// deviceByIdent finds a device inside Apply; nil if none.
func (a *applier) deviceByIdent(kind, ident string) (*Device, *Error) {
	d, err := DeviceByIdent(a.b, a.c.App, kind, ident)
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	return d, nil
}

func (a *applier) putDevice(d *Device) { a.set(deviceKey(a.c.App, d.ID), d) }

// removeDevice deletes d, its identifiers and its bindings.
func (a *applier) removeDevice(d *Device) {
	app := a.c.App
	for _, k := range identKinds {
		if v := d.Ident(k); v != "" {
			a.dropIdent(k, v, d.ID)
		}
	}
	for _, cl := range d.Clients {
		a.del(bindKey(app, cl, d.ID))
	}
	a.del(deviceKey(app, d.ID))
}

// dropIdent removes ident's index entry if it names id.
func (a *applier) dropIdent(kind, ident, id string) {
	cur, ok, err := getRaw(a.b, identKey(a.c.App, kind, ident))
	if err != nil {
		a.err = err
		return
	}
	if ok && string(cur) == id {
		a.del(identKey(a.c.App, kind, ident))
	}
}

// takeIdent points ident at d. A device that held it loses it (the phone
// got a new installation); one left with no identifier is deleted.
func (a *applier) takeIdent(kind, ident string, d *Device) *Error {
	other, serr := a.deviceByIdent(kind, ident)
	if serr != nil {
		return serr
	}
	if other != nil && other.ID != d.ID {
		other.setIdent(kind, "")
		if other.Token == "" && other.InstallationID == "" && other.RegistrationID == "" {
			a.removeDevice(other)
		} else {
			a.putDevice(other)
		}
	}
	a.set(identKey(a.c.App, kind, ident), []byte(d.ID))
	return nil
}

func (a *applier) deviceSave() (*Result, *Error) {
	c, op := a.c, a.dop()
	f := op.Set
	if err := CheckDeviceFields(f, op.Channels); err != nil {
		return nil, fail(ErrBadDevice, err.Error())
	}
	var d *Device
	var serr *Error
	if op.ID != "" {
		if d, serr = a.getDevice(op.ID); serr != nil {
			return nil, serr
		}
		if d == nil {
			return nil, fail(ErrDeviceNotFound, op.ID)
		}
	} else {
		// LeanCloud matches a POST to the installation with the same
		// installationId or deviceToken (and registrationId).
		for _, k := range identKinds {
			v := f.ident(k)
			if v == nil || *v == "" {
				continue
			}
			if d, serr = a.deviceByIdent(k, *v); serr != nil {
				return nil, serr
			}
			if d != nil {
				break
			}
		}
	}
	created := d == nil
	if created {
		if op.NewID == "" {
			return nil, fail(ErrBadCommand, "no id for a new device")
		}
		if old, serr := a.getDevice(op.NewID); serr != nil || old != nil {
			return nil, fail(ErrBadCommand, "device id taken")
		}
		d = &Device{ID: op.NewID, CreatedAt: c.Now}
	}
	before := *d
	for _, s := range []struct {
		from *string
		to   *string
	}{{f.Type, &d.Type}, {f.Token, &d.Token}, {f.InstallationID, &d.InstallationID}, {f.RegistrationID, &d.RegistrationID},
		{f.Vendor, &d.Vendor}, {f.Topic, &d.Topic}, {f.TeamID, &d.TeamID}, {f.Profile, &d.Profile}, {f.TimeZone, &d.TimeZone}} {
		if s.from != nil {
			*s.to = *s.from
		}
	}
	if d.Type == "" {
		return nil, fail(ErrBadDevice, "deviceType is required")
	}
	if d.Token == "" && d.InstallationID == "" && d.RegistrationID == "" {
		return nil, fail(ErrBadDevice, "deviceToken, installationId or registrationId is required")
	}
	if f.Badge != nil {
		d.Badge = *f.Badge
	}
	d.Badge = min(max(d.Badge+f.BadgeAdd, 0), MaxBadge)
	if len(f.Extra) > 0 {
		x, err := mergeObject(d.Extra, f.Extra)
		if err != nil || len(x) > MaxDeviceExtra {
			return nil, fail(ErrBadDevice, "other columns: at most 4096 bytes of JSON")
		}
		d.Extra = x
	}
	chs := normalize(op.Channels)
	switch op.ChannelsOp {
	case ChannelsSet:
		d.Channels = chs
	case ChannelsAdd:
		d.Channels = normalize(append(d.Channels, chs...))
	case ChannelsRemove:
		d.Channels = minus(d.Channels, chs)
	case "":
	default:
		return nil, fail(ErrBadCommand, "channels op "+op.ChannelsOp)
	}
	if len(d.Channels) > MaxDeviceChannels {
		return nil, fail(ErrBadDevice, fmt.Sprintf("at most %d channels", MaxDeviceChannels))
	}
	d.Placeholder = false
	d.UpdatedAt = c.Now
	for _, k := range identKinds {
		was, now := before.Ident(k), d.Ident(k)
		if was == now && !created {
			continue
		}
		if was != "" && was != now {
			a.dropIdent(k, was, d.ID)
		}
		if now != "" {
			if serr := a.takeIdent(k, now, d); serr != nil {
				return nil, serr
			}
		}
	}
	if op.Trusted && op.ChannelsOp != "" {
		want := d.Channels
		switch op.ChannelsOp {
		case ChannelsAdd:
			want = normalize(append(append([]string(nil), d.Clients...), chs...))
		case ChannelsRemove:
			want = minus(d.Clients, chs)
		}
		for _, cl := range minus(d.Clients, want) {
			a.unbindClient(d, cl)
		}
		for _, cl := range minus(want, d.Clients) {
			if serr := a.bindClient(d, cl); serr != nil {
				return nil, serr
			}
		}
	}
	a.putDevice(d)
	return &Result{Devices: []*Device{d}, Existing: !created}, nil
}

func (f DeviceFields) ident(kind string) *string {
	switch kind {
	case IdentToken:
		return f.Token
	case IdentInstallation:
		return f.InstallationID
	case IdentRegistration:
		return f.RegistrationID
	}
	return nil
}

// minus returns the sorted ids of s not in drop.
func minus(s, drop []string) []string {
	var out []string
	for _, v := range s {
		if !containsUnsorted(drop, v) {
			out = append(out, v)
		}
	}
	return normalize(out)
}

// mergeObject sets patch's keys on base (null removes a key); both are
// JSON objects (base may be empty). Keys come out sorted.
func mergeObject(base, patch json.RawMessage) (json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(base) > 0 {
		if err := json.Unmarshal(base, &m); err != nil {
			return nil, err
		}
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, err
	}
	for k, v := range p {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	if len(m) == 0 {
		return nil, nil
	}
	return json.Marshal(m)
}

func (a *applier) deviceDelete() (*Result, *Error) {
	op := a.dop()
	d, serr := a.getDevice(op.ID)
	if serr != nil {
		return nil, serr
	}
	if d == nil {
		return nil, fail(ErrDeviceNotFound, op.ID)
	}
	if op.IfToken != "" && d.Token != op.IfToken && d.RegistrationID != op.IfToken {
		return &Result{}, nil // re-registered with another token meanwhile: keep it
	}
	a.removeDevice(d)
	return &Result{Devices: []*Device{d}}, nil
}

// deviceBind binds (or unbinds) From to the device with op.Kind/op.Ident.
// A bind for an identifier no device has creates a placeholder, which a
// later REST save with the same identifier completes.
func (a *applier) deviceBind(bind bool) (*Result, *Error) {
	c, op := a.c, a.dop()
	if c.From == "" || op.Ident == "" || (op.Kind != IdentInstallation && op.Kind != IdentToken) {
		return nil, fail(ErrBadCommand, "bind needs a clientId and an installationId or deviceToken")
	}
	if len(op.Ident) > MaxDeviceIdent || !printable(op.Ident) {
		return nil, fail(ErrBadDevice, "identifier too long")
	}
	d, serr := a.deviceByIdent(op.Kind, op.Ident)
	if serr != nil {
		return nil, serr
	}
	if !bind {
		if d == nil || !containsSorted(d.Clients, c.From) {
			return &Result{}, nil
		}
		a.unbindClient(d, c.From)
		if d.Placeholder && len(d.Clients) == 0 {
			a.removeDevice(d)
			return &Result{}, nil
		}
		a.putDevice(d)
		return &Result{Devices: []*Device{d}, Existing: true}, nil
	}
	created := d == nil
	if created {
		if op.NewID == "" || !validType(op.Type) {
			return nil, fail(ErrBadCommand, "a new device needs an id and a deviceType")
		}
		d = &Device{ID: op.NewID, Type: op.Type, Placeholder: true, CreatedAt: c.Now}
		d.setIdent(op.Kind, op.Ident)
		a.set(identKey(c.App, op.Kind, op.Ident), []byte(d.ID))
	}
	d.UpdatedAt = c.Now
	if serr := a.bindClient(d, c.From); serr != nil {
		return nil, serr
	}
	if d.ID == "" { // evicted while binding: cannot happen, the new binding is the newest
		return nil, fail(ErrBadCommand, "bound device vanished")
	}
	a.putDevice(d)
	return &Result{Devices: []*Device{d}, Existing: !created}, nil
}

// bindClient binds cl to d (d is written by the caller) and keeps both
// caps by evicting the oldest bindings.
func (a *applier) bindClient(d *Device, cl string) *Error {
	app, now := a.c.App, a.c.Now
	a.set(bindKey(app, cl, d.ID), keyBuf(nil).ts(now))
	if !containsSorted(d.Clients, cl) {
		d.Clients = normalize(append(d.Clients, cl))
	}
	// The clientId's devices: evict the oldest others past the cap.
	binds, err := clientBinds(a.b, app, cl)
	if err != nil {
		a.err = err
		return fail(ErrBadCommand, err.Error())
	}
	for len(binds) > MaxClientDevices {
		old := binds[0]
		binds = binds[1:]
		if old.id == d.ID {
			continue
		}
		od, serr := a.getDevice(old.id)
		if serr != nil {
			return serr
		}
		if od == nil {
			a.del(bindKey(app, cl, old.id))
			continue
		}
		a.unbindClient(od, cl)
		if od.Placeholder && len(od.Clients) == 0 {
			a.removeDevice(od)
		} else {
			a.putDevice(od)
		}
	}
	// The device's clientIds: drop the oldest others past the cap.
	for len(d.Clients) > MaxDeviceClients {
		oldest, oldT := "", int64(0)
		for _, o := range d.Clients {
			if o == cl {
				continue
			}
			t, err := bindTime(a.b, app, o, d.ID)
			if err != nil {
				a.err = err
				return fail(ErrBadCommand, err.Error())
			}
			if oldest == "" || t < oldT {
				oldest, oldT = o, t
			}
		}
		a.unbindClient(d, oldest)
	}
	return nil
}

// unbindClient removes cl's binding to d (d is written by the caller).
func (a *applier) unbindClient(d *Device, cl string) {
	a.del(bindKey(a.c.App, cl, d.ID))
	d.Clients = minus(d.Clients, []string{cl})
}

func (a *applier) deviceBadge() (*Result, *Error) {
	op := a.dop()
	if len(op.IDs) > MaxClientDevices*1000 {
		return nil, fail(ErrBadCommand, "too many devices")
	}
	res := &Result{}
	for _, id := range normalize(op.IDs) {
		d, serr := a.getDevice(id)
		if serr != nil {
			return nil, serr
		}
		if d == nil {
			continue
		}
		d.Badge = min(d.Badge+1, MaxBadge)
		a.putDevice(d)
		res.Devices = append(res.Devices, d)
	}
	return res, nil
}

type binding struct {
	id string
	t  int64
}

// clientBinds returns cl's bindings, oldest first (then by device id).
func clientBinds(r Reader, app, cl string) ([]binding, error) {
	p := bindPrefix(app, cl)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("shard: client devices: %w", err)
	}
	defer it.Close()
	var out []binding
	for ok := it.First(); ok; ok = it.Next() {
		id, _, ok := readStr(it.Key()[len(p):])
		if !ok {
			continue
		}
		t, _, _ := readTS(it.Value())
		out = append(out, binding{id, t})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].t < out[j].t })
	return out, it.Error()
}

func bindTime(r Reader, app, cl, id string) (int64, error) {
	b, ok, err := getRaw(r, bindKey(app, cl, id))
	if err != nil || !ok {
		return 0, err
	}
	t, _, _ := readTS(b)
	return t, nil
}

// GetDevice returns the device, or nil.
func GetDevice(r Reader, app, id string) (*Device, error) {
	if id == "" {
		return nil, nil
	}
	d := new(Device)
	ok, err := getJSON(r, deviceKey(app, id), d)
	if !ok || err != nil {
		return nil, err
	}
	return d, nil
}

// DeviceByIdent returns the device whose identifier of kind is ident, or
// nil.
func DeviceByIdent(r Reader, app, kind, ident string) (*Device, error) {
	if ident == "" {
		return nil, nil
	}
	id, ok, err := getRaw(r, identKey(app, kind, ident))
	if err != nil || !ok {
		return nil, err
	}
	return GetDevice(r, app, string(id))
}

// ClientDevices returns the devices bound to cl, oldest binding first.
func ClientDevices(r Reader, app, cl string) ([]*Device, error) {
	binds, err := clientBinds(r, app, cl)
	if err != nil {
		return nil, err
	}
	out := make([]*Device, 0, len(binds))
	for _, b := range binds {
		d, err := GetDevice(r, app, b.id)
		if err != nil {
			return nil, err
		}
		if d != nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// ScanDevices calls fn for each device of app in id order until it
// returns false.
func ScanDevices(r Reader, app string, fn func(*Device) bool) error {
	p := devicePrefix(app)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("shard: scan devices: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		d := new(Device)
		if err := json.Unmarshal(it.Value(), d); err != nil {
			return fmt.Errorf("shard: decode device: %w", err)
		}
		if !fn(d) {
			break
		}
	}
	return it.Error()
}
