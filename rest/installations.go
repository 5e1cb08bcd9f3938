package rest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/push"
)

// LeanCloud's _Installation REST API (DOCS push/guide/rest.mdx
// "Installation"), what the SDKs call to register a device for push; the
// rows are the core's device registry (core/devices.go).
//
//	POST   /1.1/installations        app key  create, or update the installation with the same
//	                                          installationId, deviceToken or registrationId:
//	                                          201 {objectId, createdAt} (Location header), or
//	                                          200 {objectId, createdAt, updatedAt} for a match
//	PUT    /1.1/installations/{id}   app key  update: 200 {objectId, updatedAt}
//	GET    /1.1/installations/{id}   app key  the row
//	GET    /1.1/installations        master   {"results":[rows]}: where (equality on deviceType,
//	                                          deviceToken, installationId, registrationId, vendor,
//	                                          channels), skip, limit (100, at most 1000)
//	DELETE /1.1/installations/{id}   master   {}
//
// ?fetchWhenSave=true makes POST and PUT answer with the whole row (the
// Java SDK asks for it). Columns: deviceType (required, lower-case
// letters), deviceToken (Apple: hex), installationId, registrationId,
// vendor, channels (an array, or {"__op":"Add"|"AddUnique"|"Remove",
// "objects":[…]}), apnsTopic, apnsTeamId, deviceProfile, timeZone, badge
// (a number, or {"__op":"Increment","amount":n}); any other column (a name
// of letters, digits and _) is kept as given. objectId, createdAt,
// updatedAt, ACL and keys starting with _ or @ are ignored.
//
// Channels saved with the app key are stored and returned, but only the
// master key's channels (or a session login) bind a clientId to the device
// for IM offline push: the app key is in every copy of the app. A row's
// channels are returned with the clientIds bound to it.

// Installation errors: LeanCloud storage codes (docs/sdk/other/error-code).
const (
	codeInvalidKeyName   = 105
	codeIncorrectType    = 111
	codeKeyRequired      = 113
	codeInvalidChannel   = 112
	codeInvalidToken     = 114
	codeObjectTooLarge   = 116
	maxInstallationQuery = 1000
)

var keyName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// stringColumns map the REST names of string columns to the
// DeviceRecord field names the core takes.
var stringColumns = map[string]string{
	"deviceType": "device_type", "deviceToken": "device_token", "installationId": "installation_id",
	"registrationId": "registration_id", "vendor": "vendor", "apnsTopic": "apns_topic",
	"apnsTeamId": "apns_team_id", "deviceProfile": "device_profile", "timeZone": "time_zone",
}

// ignoredColumns are read-only or SDK bookkeeping.
var ignoredColumns = map[string]bool{"objectId": true, "createdAt": true, "updatedAt": true, "ACL": true, "className": true}

func badType(col string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: codeIncorrectType, Msg: "Field set to incorrect type: " + col}
}

func setRecord(rec *meshpb.DeviceRecord, field, v string) {
	switch field {
	case "device_type":
		rec.DeviceType = v
	case "device_token":
		rec.DeviceToken = v
	case "installation_id":
		rec.InstallationId = v
	case "registration_id":
		rec.RegistrationId = v
	case "vendor":
		rec.Vendor = v
	case "apns_topic":
		rec.ApnsTopic = v
	case "apns_team_id":
		rec.ApnsTeamId = v
	case "device_profile":
		rec.DeviceProfile = v
	case "time_zone":
		rec.TimeZone = v
	}
}

func (h *Handler) installationRoutes(handle func(string, access, func(*call) *apiError)) {
	handle("POST /1.1/installations", appKey, h.createInstallation)
	handle("GET /1.1/installations", masterKey, h.queryInstallations)
	handle("GET /1.1/installations/{id}", appKey, h.getInstallation)
	handle("PUT /1.1/installations/{id}", appKey, h.updateInstallation)
	handle("DELETE /1.1/installations/{id}", masterKey, h.deleteInstallation)
}

// installationSave parses a POST or PUT body into a DEVICE_SAVE.
func (h *Handler) installationSave(c *call) (*meshpb.AdminRequest, *apiError) {
	var body map[string]any
	if aerr := h.decode(c, &body); aerr != nil {
		return nil, aerr
	}
	a := &meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_SAVE, Device: &meshpb.DeviceRecord{}, DeviceTrusted: c.master}
	extra := map[string]any{}
	for k, v := range body {
		switch {
		case ignoredColumns[k] || strings.HasPrefix(k, "_") || strings.HasPrefix(k, "@"):
			continue
		case stringColumns[k] != "":
			s, ok := v.(string)
			if !ok {
				return nil, badType(k)
			}
			setRecord(a.Device, stringColumns[k], s)
			a.DeviceFields = append(a.DeviceFields, stringColumns[k])
		case k == "badge":
			if aerr := badgeColumn(a, v); aerr != nil {
				return nil, aerr
			}
		case k == "channels":
			if aerr := channelsColumn(a, v); aerr != nil {
				return nil, aerr
			}
		default:
			if !keyName.MatchString(k) {
				return nil, &apiError{Status: http.StatusBadRequest, Code: codeInvalidKeyName,
					Msg: fmt.Sprintf("Invalid key name %q: a letter, then letters, digits and _", k)}
			}
			extra[k] = v
		}
	}
	if len(extra) > 0 {
		b, err := json.Marshal(extra)
		if err != nil {
			return nil, errInvalidJSON
		}
		if len(b) > 4096 {
			return nil, &apiError{Status: http.StatusBadRequest, Code: codeObjectTooLarge, Msg: "The object is too large: other columns over 4096 bytes"}
		}
		a.Device.Extra = b
		a.DeviceFields = append(a.DeviceFields, "extra")
	}
	if t := a.Device.GetDeviceType(); slices.Contains(a.DeviceFields, "device_type") && !validDeviceType(t) {
		return nil, errBadRequest("deviceType %q: lower-case letters, at most 16", t)
	}
	if tok := a.Device.GetDeviceToken(); tok != "" && push.IsApple(a.Device.GetDeviceType()) && !push.IsAPNsToken(tok) {
		return nil, &apiError{Status: http.StatusBadRequest, Code: codeInvalidToken, Msg: "Invalid device token: an APNs token is hex"}
	}
	return a, nil
}

func validDeviceType(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}

// badgeColumn reads badge: a number, or {"__op":"Increment","amount":n}.
func badgeColumn(a *meshpb.AdminRequest, v any) *apiError {
	switch b := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(b.String(), 10, 64)
		if err != nil || n < 0 || n > 1<<31-1 {
			return badType("badge")
		}
		a.Device.Badge = n
		a.DeviceFields = append(a.DeviceFields, "badge")
		return nil
	case map[string]any:
		if b["__op"] == "Increment" {
			n := int64(1)
			if amt, ok := b["amount"].(json.Number); ok {
				v, err := strconv.ParseInt(amt.String(), 10, 64)
				if err != nil || v < -(1<<31-1) || v > 1<<31-1 {
					return badType("badge")
				}
				n = v
			}
			a.DeviceBadgeAdd = n
			return nil
		}
	}
	return badType("badge")
}

// channelsColumn reads channels: an array of strings, or an Add,
// AddUnique or Remove operation.
func channelsColumn(a *meshpb.AdminRequest, v any) *apiError {
	op, list := "set", v
	if m, ok := v.(map[string]any); ok {
		switch m["__op"] {
		case "Add", "AddUnique":
			op = "add"
		case "Remove":
			op = "remove"
		case "Delete":
			op, list = "set", []any{}
		default:
			return badType("channels")
		}
		if op != "set" {
			list = m["objects"]
		}
	}
	arr, ok := list.([]any)
	if !ok {
		return badType("channels")
	}
	if len(arr) > 64 {
		return errBadRequest("at most 64 channels")
	}
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return badType("channels")
		}
		if len(s) > 128 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return &apiError{Status: http.StatusBadRequest, Code: codeInvalidChannel, Msg: "Invalid channel name: at most 128 printable bytes"}
		}
		a.Device.Channels = append(a.Device.Channels, s)
	}
	a.DeviceChannelsOp = op
	return nil
}

// installationView is a row as LeanCloud returns it.
func installationView(d *meshpb.DeviceRecord) map[string]any {
	out := map[string]any{}
	if len(d.GetExtra()) > 0 {
		json.Unmarshal(d.GetExtra(), &out)
	}
	for col, field := range stringColumns {
		var v string
		switch field {
		case "device_type":
			v = d.GetDeviceType()
		case "device_token":
			v = d.GetDeviceToken()
		case "installation_id":
			v = d.GetInstallationId()
		case "registration_id":
			v = d.GetRegistrationId()
		case "vendor":
			v = d.GetVendor()
		case "apns_topic":
			v = d.GetApnsTopic()
		case "apns_team_id":
			v = d.GetApnsTeamId()
		case "device_profile":
			v = d.GetDeviceProfile()
		case "time_zone":
			v = d.GetTimeZone()
		}
		if v != "" {
			out[col] = v
		} else {
			delete(out, col)
		}
	}
	chs := append(slices.Clone(d.GetChannels()), d.GetClients()...)
	slices.Sort(chs)
	out["channels"] = slices.Compact(chs)
	if out["channels"] == nil {
		out["channels"] = []string{}
	}
	out["badge"] = d.GetBadge()
	out["objectId"] = d.GetObjectId()
	out["createdAt"] = lcpb.FormatDate(d.GetCreatedAt())
	out["updatedAt"] = lcpb.FormatDate(d.GetUpdatedAt())
	return out
}

// deviceDo runs a device op; 101 comes back as 404.
func (h *Handler) deviceDo(c *call, a *meshpb.AdminRequest) (*meshpb.AdminReply, *apiError) {
	rep, _, aerr := h.do(c, "", a, nil)
	if aerr != nil {
		if aerr.Code == codeObjectNotFound {
			aerr.Status = http.StatusNotFound
			aerr.Msg = "Object not found."
		}
		return nil, aerr
	}
	return rep.GetAdmin(), nil
}

func fetchWhenSave(c *call) bool { return c.r.URL.Query().Get("fetchWhenSave") == "true" }

// POST /1.1/installations.
func (h *Handler) createInstallation(c *call) *apiError {
	a, aerr := h.installationSave(c)
	if aerr != nil {
		return aerr
	}
	if !slices.Contains(a.DeviceFields, "device_type") {
		return &apiError{Status: http.StatusBadRequest, Code: codeKeyRequired, Msg: "Key is required: deviceType"}
	}
	rep, aerr := h.deviceDo(c, a)
	if aerr != nil {
		return aerr
	}
	d := rep.GetDevices()[0]
	switch {
	case fetchWhenSave(c):
		status := http.StatusOK
		if rep.GetDeviceCreated() {
			status = http.StatusCreated
		}
		writeJSON(c.w, status, installationView(d))
	case rep.GetDeviceCreated():
		c.w.Header().Set("Location", "/1.1/installations/"+d.GetObjectId())
		writeJSON(c.w, http.StatusCreated, map[string]any{"objectId": d.GetObjectId(), "createdAt": lcpb.FormatDate(d.GetCreatedAt())})
	default:
		writeJSON(c.w, http.StatusOK, map[string]any{"objectId": d.GetObjectId(),
			"createdAt": lcpb.FormatDate(d.GetCreatedAt()), "updatedAt": lcpb.FormatDate(d.GetUpdatedAt())})
	}
	return nil
}

// PUT /1.1/installations/{id}.
func (h *Handler) updateInstallation(c *call) *apiError {
	a, aerr := h.installationSave(c)
	if aerr != nil {
		return aerr
	}
	a.DeviceId = c.r.PathValue("id")
	rep, aerr := h.deviceDo(c, a)
	if aerr != nil {
		return aerr
	}
	d := rep.GetDevices()[0]
	if fetchWhenSave(c) {
		writeJSON(c.w, http.StatusOK, installationView(d))
		return nil
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"objectId": d.GetObjectId(), "updatedAt": lcpb.FormatDate(d.GetUpdatedAt())})
	return nil
}

// GET /1.1/installations/{id}.
func (h *Handler) getInstallation(c *call) *apiError {
	rep, aerr := h.deviceDo(c, &meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_GET, DeviceId: c.r.PathValue("id")})
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, installationView(rep.GetDevices()[0]))
	return nil
}

// DELETE /1.1/installations/{id}.
func (h *Handler) deleteInstallation(c *call) *apiError {
	if _, aerr := h.deviceDo(c, &meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_DELETE, DeviceId: c.r.PathValue("id")}); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// GET /1.1/installations?where&skip&limit.
func (h *Handler) queryInstallations(c *call) *apiError {
	q := c.r.URL.Query()
	a := &meshpb.AdminRequest{Op: meshpb.AdminRequest_DEVICE_LIST, DeviceWhere: &meshpb.DeviceRecord{}}
	for name, dst := range map[string]*int32{"limit": &a.Limit, "skip": &a.DeviceSkip} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || (name == "limit" && n > maxInstallationQuery) || n > 1<<20 {
				return errBadRequest("%s must be a number (limit at most %d)", name, maxInstallationQuery)
			}
			*dst = int32(n)
		}
	}
	if w := q.Get("where"); w != "" {
		var where map[string]any
		if err := json.Unmarshal([]byte(w), &where); err != nil {
			return errInvalidJSON
		}
		for k, v := range where {
			s, ok := v.(string)
			if !ok {
				return errBadRequest("where: relaymesh supports equality to a string only (%s)", k)
			}
			switch field := stringColumns[k]; {
			case k == "channels":
				a.DeviceWhere.Channels = []string{s}
				a.DeviceWhereFields = append(a.DeviceWhereFields, "channels")
			case field == "device_type" || field == "device_token" || field == "installation_id" ||
				field == "registration_id" || field == "vendor":
				setRecord(a.DeviceWhere, field, s)
				a.DeviceWhereFields = append(a.DeviceWhereFields, field)
			default:
				return errBadRequest("where: relaymesh supports deviceType, deviceToken, installationId, registrationId, vendor and channels (%s)", k)
			}
		}
	}
	rep, aerr := h.deviceDo(c, a)
	if aerr != nil {
		return aerr
	}
	rows := make([]map[string]any, 0, len(rep.GetDevices()))
	for _, d := range rep.GetDevices() {
		rows = append(rows, installationView(d))
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"results": rows})
	return nil
}
