package leancloud

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Target is a running relaymesh's import API (rest/import.go), written with
// the app's master key.
type Target struct {
	Server    string // e.g. http://127.0.0.1:8080
	AppID     string
	MasterKey string
	Client    *http.Client // nil: one with a 60 s timeout
	Retries   int          // of 429, 5xx and unanswered requests (0: 6)
	Sleep     func(context.Context, time.Duration) error
}

// Batch bounds of the requests (the server's: 100 conversations, 1000
// messages, 4 MiB bodies).
const (
	convBatch     = 100
	msgBatch      = 1000
	maxBatchBytes = 1 << 20
)

type convsReply struct {
	Created  []string `json:"created"`
	Existing []string `json:"existing"`
	Refused  []struct {
		ObjectID string `json:"objectId"`
		Code     int    `json:"code"`
		Error    string `json:"error"`
	} `json:"refused"`
}

type msgsReply struct {
	Imported   int `json:"imported"`
	Duplicates int `json:"duplicates"`
}

// badRequest is a request relaymesh refused (4xx other than 401/403/429):
// that batch is a problem; the import goes on.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func (t *Target) importConvs(ctx context.Context, convs []*Conversation) (*convsReply, error) {
	var out convsReply
	err := t.post(ctx, "/1.2/rtm/import/conversations", map[string]any{"conversations": convs}, &out)
	return &out, err
}

func (t *Target) importMsgs(ctx context.Context, cid string, msgs []*Message) (*msgsReply, error) {
	var out msgsReply
	err := t.post(ctx, "/1.2/rtm/import/conversations/"+url.PathEscape(cid)+"/messages", map[string]any{"messages": msgs}, &out)
	return &out, err
}

func (t *Target) post(ctx context.Context, path string, body, out any) error {
	b, err := marshal(body)
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(t.Server, "/") + path
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	return retry(ctx, t.Retries, t.Sleep, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-LC-Id", t.AppID)
		req.Header.Set("X-LC-Key", t.MasterKey+",master")
		resp, err := client.Do(req)
		if err != nil {
			return transient(ctx, err), err
		}
		defer resp.Body.Close()
		rb := io.LimitReader(resp.Body, 16<<20)
		if resp.StatusCode != http.StatusOK {
			msg := errorBody(rb)
			switch {
			case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
				return false, fmt.Errorf("%w: relaymesh answered %s: %s", ErrUnauthorized, resp.Status, msg)
			case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
				return true, fmt.Errorf("relaymesh answered %s: %s", resp.Status, msg)
			case resp.StatusCode == http.StatusNotFound && strings.Contains(msg, "does not serve"):
				return false, fmt.Errorf("%s has no import API (POST %s): is it a relaymesh with `relaymesh import` support?", t.Server, path)
			}
			return false, &badRequest{fmt.Sprintf("relaymesh refused the batch: %s: %s", resp.Status, msg)}
		}
		if err := json.NewDecoder(rb).Decode(out); err != nil {
			return true, fmt.Errorf("relaymesh's answer: %v", err)
		}
		return false, nil
	})
}
