package push

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// From LeanCloud's push payload to what APNs and FCM take (DOCS
// push/guide/rest.mdx "消息内容参数", im/guide/intermediate.mdx "离线推送通知";
// docs/ARCHITECTURE.md "Device push" has the table).
//
// A payload is a JSON object. Top-level "_profile" ("dev": the APNs
// sandbox) and "_apns_team_id" are instructions, never delivered. A
// platform object ("ios", "android", "fcm", and the other vendors' "mi",
// "hms", "mz", "vivo", "oppo") holds fields for that platform only, which
// override the top-level ones there; platform objects are never delivered.

// Payload keys relaymesh acts on.
const (
	keyProfile = "_profile"
	keyTeamID  = "_apns_team_id"
	profileDev = "dev"
	// BadgeIncrement as the "badge" of an iOS payload adds one to the
	// device's badge (the installation's "badge" column).
	BadgeIncrement = "Increment"
)

var platformKeys = map[string]bool{"ios": true, "android": true, "fcm": true,
	"mi": true, "hms": true, "mz": true, "vivo": true, "oppo": true}

// decodeObject parses a JSON object keeping numbers as written.
func decodeObject(raw []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("payload is not a JSON object")
	}
	return m, nil
}

// platformView is the payload as platform sees it: the top-level fields,
// then those of each of overrides present, minus instructions and
// platform objects. It also returns the top-level instructions.
func platformView(top map[string]any, overrides ...string) (view map[string]any, profile, teamID string) {
	profile, _ = top[keyProfile].(string)
	teamID, _ = top[keyTeamID].(string)
	view = make(map[string]any, len(top))
	for k, v := range top {
		if k != keyProfile && k != keyTeamID && !platformKeys[k] {
			view[k] = v
		}
	}
	for _, p := range overrides {
		o, _ := top[p].(map[string]any)
		for k, v := range o {
			// Instructions count only at the top (LeanCloud: "_profile"
			// inside "ios" does not take effect).
			if k != keyProfile && k != keyTeamID && !platformKeys[k] {
				view[k] = v
			}
		}
	}
	return view, profile, teamID
}

// NeedsBadge reports whether payload asks to increment iOS badges: its
// iOS "badge" (top level, in "ios", or in "aps") is "Increment".
func NeedsBadge(payload json.RawMessage) bool {
	if !bytes.Contains(payload, []byte(BadgeIncrement)) {
		return false
	}
	top, err := decodeObject(payload)
	if err != nil {
		return false
	}
	view, _, _ := platformView(top, "ios")
	if b, _ := view["badge"].(string); b == BadgeIncrement {
		return true
	}
	aps, _ := view["aps"].(map[string]any)
	b, _ := aps["badge"].(string)
	return b == BadgeIncrement
}

// MaxAPNsPayload is APNs' limit on a notification's body.
const MaxAPNsPayload = 4096

// apsKeys are the payload keys that go inside "aps" (Apple's payload key
// reference, as LeanCloud lists them); every other key is custom data
// beside "aps".
var apsKeys = []string{"alert", "badge", "sound", "content-available", "mutable-content", "category",
	"thread-id", "url-args", "target-content-id", "interruption-level", "relevance-score"}

// apnsNote is one APNs request: the body and the headers it asks for.
type apnsNote struct {
	body       []byte
	pushType   string // apns-push-type
	priority   string // apns-priority
	collapseID string // apns-collapse-id; "" for none
	sandbox    bool   // _profile "dev"
	teamID     string // _apns_team_id; "" for any
}

// apnsMessage turns a LeanCloud payload into the APNs request for d.
//
//   - "ios" fields override the top level; "collapse-id", "apns-priority"
//     and "apns-push-type" become headers;
//   - a payload with "aps" is sent as is (minus those); otherwise the
//     known keys move into "aps", and "title" joins a string "alert" as
//     {"title", "body"};
//   - "badge": "Increment" becomes d.Badge (left out when 0, unknown);
//     a numeric string becomes the number;
//   - the push type is "background" for a content-available push with no
//     alert, badge or sound, else "alert"; the priority 5 for background,
//     else 10.
func apnsMessage(payload json.RawMessage, d Device) (apnsNote, error) {
	top, err := decodeObject(payload)
	if err != nil {
		return apnsNote{}, err
	}
	view, profile, teamID := platformView(top, "ios")
	n := apnsNote{sandbox: profile == profileDev, teamID: teamID}
	if v, ok := view["collapse-id"].(string); ok {
		n.collapseID = v
	}
	if v, ok := view["apns-push-type"].(string); ok {
		n.pushType = v
	}
	switch v := view["apns-priority"].(type) {
	case json.Number:
		n.priority = v.String()
	case string:
		n.priority = v
	}
	delete(view, "collapse-id")
	delete(view, "apns-push-type")
	delete(view, "apns-priority")

	aps, given := view["aps"].(map[string]any)
	if !given {
		aps = map[string]any{}
		for _, k := range apsKeys {
			if v, ok := view[k]; ok {
				aps[k] = v
				delete(view, k)
			}
		}
		if title, ok := view["title"]; ok {
			delete(view, "title")
			switch a := aps["alert"].(type) {
			case string:
				aps["alert"] = map[string]any{"title": title, "body": a}
			case map[string]any:
				if _, has := a["title"]; !has {
					a["title"] = title
				}
			case nil:
				aps["alert"] = map[string]any{"title": title}
			}
		}
		view["aps"] = aps
	}
	switch b := aps["badge"].(type) {
	case string:
		if b == BadgeIncrement && d.Badge > 0 {
			aps["badge"] = d.Badge
		} else if v, err := strconv.ParseInt(strings.TrimSpace(b), 10, 64); err == nil {
			aps["badge"] = v
		} else {
			delete(aps, "badge")
		}
	}
	if n.pushType == "" {
		n.pushType = "alert"
		_, alert := aps["alert"]
		_, badge := aps["badge"]
		_, sound := aps["sound"]
		if fmt.Sprint(aps["content-available"]) == "1" && !alert && !badge && !sound {
			n.pushType = "background"
		}
	}
	if n.priority == "" {
		n.priority = "10"
		if n.pushType == "background" {
			n.priority = "5"
		}
	}
	if n.body, err = marshalCompact(view); err != nil {
		return apnsNote{}, err
	}
	if len(n.body) > MaxAPNsPayload {
		return apnsNote{}, fmt.Errorf("payload of %d bytes is over APNs' %d", len(n.body), MaxAPNsPayload)
	}
	return n, nil
}

// marshalCompact encodes v without HTML escaping (alert text is sent as
// written) and without the encoder's newline.
func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// fcmMessage is the FCM HTTP v1 message for a LeanCloud payload, in the
// shape LeanCloud's Android SDK reads (LCFirebaseMessagingService: the
// notification's title and body, and data "payload", the JSON of the
// whole payload):
//
//   - "android", then "fcm" fields override the top level;
//   - notification {title, body: "alert"} (an "alert" object gives its
//     "title" and "body"), none when "silent" is true (a data message);
//   - data {"payload": the payload's JSON};
//   - android {ttl, priority HIGH (NORMAL when silent), collapse_key from
//     "collapse_key" or "collapse-id", notification.channel_id from
//     "_notificationChannel"}.
func fcmMessage(payload json.RawMessage, token string, ttlSeconds int64) ([]byte, error) {
	top, err := decodeObject(payload)
	if err != nil {
		return nil, err
	}
	view, _, _ := platformView(top, "android", "fcm")
	data, err := marshalCompact(view)
	if err != nil {
		return nil, err
	}
	type notification struct {
		Title string `json:"title,omitempty"`
		Body  string `json:"body,omitempty"`
	}
	type androidNotification struct {
		ChannelID string `json:"channel_id,omitempty"`
	}
	type android struct {
		CollapseKey  string               `json:"collapse_key,omitempty"`
		Priority     string               `json:"priority"`
		TTL          string               `json:"ttl"`
		Notification *androidNotification `json:"notification,omitempty"`
	}
	type message struct {
		Token        string            `json:"token"`
		Notification *notification     `json:"notification,omitempty"`
		Data         map[string]string `json:"data"`
		Android      android           `json:"android"`
	}
	m := message{Token: token, Data: map[string]string{"payload": string(data)},
		Android: android{Priority: "HIGH", TTL: strconv.FormatInt(ttlSeconds, 10) + "s"}}
	if s, _ := view["silent"].(bool); s {
		m.Android.Priority = "NORMAL"
	} else {
		var nt notification
		nt.Title, _ = view["title"].(string)
		switch a := view["alert"].(type) {
		case string:
			nt.Body = a
		case map[string]any:
			nt.Body, _ = a["body"].(string)
			if nt.Title == "" {
				nt.Title, _ = a["title"].(string)
			}
		}
		if nt != (notification{}) {
			m.Notification = &nt
		}
		if ch, _ := view["_notificationChannel"].(string); ch != "" {
			m.Android.Notification = &androidNotification{ChannelID: ch}
		}
	}
	if ck, _ := view["collapse_key"].(string); ck != "" {
		m.Android.CollapseKey = ck
	} else if ck, _ := view["collapse-id"].(string); ck != "" {
		m.Android.CollapseKey = ck
	}
	return marshalCompact(struct {
		Message message `json:"message"`
	}{m})
}
