package rest

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/relaymesh/relaymesh/apps"
)

// Authentication (REST-AND-HOOKS.md §1.0):
//
//	X-LC-Id: <appId>
//	X-LC-Key: <appKey>            or  X-LC-Key: <masterKey>,master
//	X-LC-Sign: <md5hex(ts+key)>,<ts>[,master]   (instead of X-LC-Key)
//
// The sign is compared case-insensitively. Its timestamp (ms; a value
// below 1e11 is taken as seconds) must be within Limits.SignMaxAge of the
// edge's clock, either way (default 15 minutes): a sign captured from a
// request is otherwise a key for ever. Outside the window the answer is
// LeanCloud's bad-key answer, 401 {"code":401,"error":"Unauthorized."}.
// A key the app has not
// configured matches nothing. An app with no keys at all — every app of
// `relaymesh dev` without a config file — accepts any key as what it
// claims to be: "anything,master" is the master key, "anything" the app key.

// caller is who an authenticated request comes from.
type caller struct {
	app    apps.App
	master bool
}

// authenticate checks the app and its key; it does not require either key.
func (h *Handler) authenticate(r *http.Request) (caller, *apiError) {
	id := r.Header.Get("X-LC-Id")
	if id == "" {
		return caller{}, errUnauthorized
	}
	app, err := h.cfg.Apps.Lookup(id)
	if err != nil {
		return caller{}, errUnauthorized
	}
	open := app.Key == "" && app.MasterKey == ""
	if sign := r.Header.Get("X-LC-Sign"); sign != "" {
		parts := strings.Split(sign, ",")
		if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "master") {
			return caller{}, errUnauthorized
		}
		master := len(parts) == 3
		if !h.signFresh(parts[1]) {
			return caller{}, errUnauthorized
		}
		if open {
			return caller{app, master}, nil
		}
		key := app.Key
		if master {
			key = app.MasterKey
		}
		if key == "" || !equalFold(parts[0], Sign(parts[1], key)) {
			return caller{}, errUnauthorized
		}
		return caller{app, master}, nil
	}
	key := r.Header.Get("X-LC-Key")
	if key == "" {
		return caller{}, errUnauthorized
	}
	k, master := strings.CutSuffix(key, ",master")
	if open {
		return caller{app, master}, nil
	}
	want := app.Key
	if master {
		want = app.MasterKey
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(k), []byte(want)) != 1 {
		return caller{}, errUnauthorized
	}
	return caller{app, master}, nil
}

// signFresh reports whether an X-LC-Sign timestamp is within
// Limits.SignMaxAge of now (always, when the check is disabled).
func (h *Handler) signFresh(ts string) bool {
	max := h.limits.SignMaxAge
	if max < 0 {
		return true
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n <= 0 {
		return false
	}
	at := time.UnixMilli(n)
	if n < 1e11 {
		at = time.Unix(n, 0)
	}
	d := h.cfg.Now().Sub(at)
	return d <= max && d >= -max
}

// Sign returns the hex MD5 of ts followed by key: X-LC-Sign's first field.
func Sign(ts, key string) string {
	sum := md5.Sum([]byte(ts + key))
	return hex.EncodeToString(sum[:])
}

func equalFold(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(a)), []byte(strings.ToLower(b))) == 1
}
