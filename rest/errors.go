package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// apiError is a failed request: the HTTP status and LeanCloud's error body.
type apiError struct {
	Status int    `json:"-"`
	Code   int32  `json:"code"`
	Msg    string `json:"error"`
}

func (e *apiError) Error() string { return fmt.Sprintf("rest: %d %d %s", e.Status, e.Code, e.Msg) }

// Storage API codes LeanCloud answers REST requests with (its error-code
// list) and relaymesh's use of them.
const (
	codeInternal      = 1   // "Internal server error": bad parameters, or nothing better applies
	codeInvalidJSON   = 107 // "Malformed json object. A json dictionary is expected."
	codeMasterOnly    = 119 // "That operation isn't allowed for clients.": master key required
	codeUnauthorized  = 401 // "Unauthorized.": unknown app, wrong key or signature
	codeTooMany       = 429 // over the REST send queue (REST-AND-HOOKS.md §1.7: HTTP 429)
	codeNotFound      = 404 // no such REST path
	codeKickedByApp   = 4115
	codeFrameTooLong  = 4109
	codeBackendFailed = 4200
)

func errBadRequest(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: codeInternal, Msg: fmt.Sprintf(format, args...)}
}

var (
	errUnauthorized = &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: "Unauthorized."}
	errMasterOnly   = &apiError{Status: http.StatusForbidden, Code: codeMasterOnly,
		Msg: "That operation isn't allowed for clients. (master key required: X-LC-Key: <masterKey>,master)"}
	errInvalidJSON = &apiError{Status: http.StatusBadRequest, Code: codeInvalidJSON,
		Msg: "Malformed json object. A json dictionary is expected."}
	errTooMany = &apiError{Status: http.StatusTooManyRequests, Code: codeTooMany,
		Msg: "Too many requests: the REST message queue of this app is full."}
)

// imStatus is the HTTP status of an IM error code from the core: missing
// things 404, refusals 403, server trouble 500, the rest 400.
func imStatus(code int32) int {
	switch code {
	case 4303, 4404, 4323: // CONVERSATION_NOT_FOUND, MESSAGE_NOT_FOUND, TEMPORARY_CONVERSATION_EXPIRED
		return http.StatusNotFound
	case 4100:
		return http.StatusUnauthorized
	case 4309, 4312, 4315, 4317, 4320, 4403, 4548, 4563:
		return http.StatusForbidden
	case 4200, 4300, 4301:
		return http.StatusInternalServerError
	case 4318: // CONVERSATION_API_QUOTA_EXCEEDED: the daily broadcast limit
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // message data is returned as stored
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"code":1,"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func writeError(w http.ResponseWriter, e *apiError) { writeJSON(w, e.Status, e) }
