package leancloud

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Source is a LeanCloud app's REST API, read with its master key.
type Source struct {
	// Server is the app's API host, e.g. https://abcd1234.api.lncldglobal.com
	// (the console's 设置 › 应用凭证 › 服务器地址; REST-AND-HOOKS.md §1.0).
	Server    string
	AppID     string
	MasterKey string
	// PageSize is the rows per history page (LeanCloud: at most 1000).
	// 0: 1000.
	PageSize int
	// Client makes the requests; nil: one with a 60 s timeout.
	Client *http.Client
	// Retries of a request answered 429 or 5xx, or not answered (0: 6),
	// waiting 1 s, 2 s, 4 s … (at most 30 s) between them.
	Retries int
	// Sleep waits between retries (tests); nil: a timer.
	Sleep func(context.Context, time.Duration) error
}

// ErrUnauthorized: a server refused the credentials (401, 403).
var ErrUnauthorized = errors.New("leancloud: credentials refused")

// errNotFound: the conversation is gone on LeanCloud (404).
var errNotFound = errors.New("not found")

// page fetches one page of cid's history, newest first, older than the
// (ts, msgid) cursor when ts > 0. LeanCloud's history API (REST-AND-HOOKS.md
// §1.2, §5): GET /1.2/rtm/{conversations|chatrooms}/{cid}/messages with
// limit, and msgid+timestamp for the next page (exclusive); the answer is a
// bare JSON array.
func (s *Source) page(ctx context.Context, cid string, room bool, ts int64, msgid string) ([]json.RawMessage, error) {
	return s.get(ctx, cid, room, ts, msgid, s.pageSize())
}

// check asks for one message of cid, to learn early that LeanCloud
// refuses the key (ErrUnauthorized), before anything is written.
func (s *Source) check(ctx context.Context, cid string, room bool) error {
	_, err := s.get(ctx, cid, room, 0, "", 1)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

func (s *Source) get(ctx context.Context, cid string, room bool, ts int64, msgid string, limit int) ([]json.RawMessage, error) {
	kind := "conversations"
	if room {
		kind = "chatrooms"
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if ts > 0 {
		q.Set("timestamp", strconv.FormatInt(ts, 10))
		q.Set("msgid", msgid)
	}
	u := strings.TrimSuffix(s.Server, "/") + "/1.2/rtm/" + kind + "/" + url.PathEscape(cid) + "/messages?" + q.Encode()
	var rows []json.RawMessage
	err := retry(ctx, s.Retries, s.Sleep, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("X-LC-Id", s.AppID)
		req.Header.Set("X-LC-Key", s.MasterKey+",master")
		resp, err := s.client().Do(req)
		if err != nil {
			return transient(ctx, err), err
		}
		defer resp.Body.Close()
		body := io.LimitReader(resp.Body, 64<<20) // 1000 rows of 5 KB, with room
		switch {
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return false, fmt.Errorf("%w: LeanCloud answered %s: %s", ErrUnauthorized, resp.Status, errorBody(body))
		case resp.StatusCode == http.StatusNotFound:
			return false, fmt.Errorf("%w: %s", errNotFound, errorBody(body))
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return true, fmt.Errorf("LeanCloud answered %s: %s", resp.Status, errorBody(body))
		case resp.StatusCode != http.StatusOK:
			return false, fmt.Errorf("LeanCloud answered %s: %s", resp.Status, errorBody(body))
		}
		rows = nil
		if err := json.NewDecoder(body).Decode(&rows); err != nil {
			return true, fmt.Errorf("history page of %s: not a JSON array: %v", cid, err)
		}
		return false, nil
	})
	return rows, err
}

func (s *Source) pageSize() int {
	if s.PageSize <= 0 || s.PageSize > 1000 {
		return 1000
	}
	return s.PageSize
}

func (s *Source) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return &http.Client{Timeout: 60 * time.Second}
}

// errorBody returns the start of an error answer.
func errorBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	return strings.TrimSpace(string(b))
}

// retry runs try until it succeeds, fails for good (again false), or has
// been retried n times (0: 6), backing off 1 s, 2 s, 4 s … up to 30 s.
func retry(ctx context.Context, n int, sleep func(context.Context, time.Duration) error, try func() (again bool, err error)) error {
	if n <= 0 {
		n = 6
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	wait := time.Second
	for i := 0; ; i++ {
		again, err := try()
		if err == nil || !again || i >= n {
			return err
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// transient reports whether a request that got no answer is worth
// retrying: not when ctx ended, nor when the server's certificate is
// refused (that does not fix itself).
func transient(ctx context.Context, err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return ctx.Err() == nil && !errors.As(err, &cv) && !errors.As(err, &ua) && !errors.As(err, &hn) && !errors.As(err, &ci)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
