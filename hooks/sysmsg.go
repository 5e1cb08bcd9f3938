package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Service-conversation webhook (REST-AND-HOOKS.md §2.4, LeanCloud's
// "系统对话 webhook"): what a user sends to a system conversation is
// POSTed, off the send path, to the app's configured URL as a JSON array of
// SysMessage, several messages per request when they queue up.
//
//	POST <SysApp.URL>
//	Content-Type: application/json
//	X-LC-Id: <appId>
//	X-LC-Hook-Key: <SysApp.HookKey>        only when configured
//	X-Relaymesh-Hook: _sysMessage
//	X-Relaymesh-Timestamp: <unix ms>
//	X-Relaymesh-Signature: <hex HMAC-SHA256(masterKey, timestamp + "." + body)>   only with SysApp.MasterKey
//
//	[{"fromIp":"","conv":{"__type":"Pointer","className":"_Conversation","objectId":"…"},
//	  "msgId":"…","from":"alice","bin":false,"data":"…",
//	  "createdAt":{"__type":"Date","iso":"2015-07-30T14:37:42.584Z"},"updatedAt":{…},
//	  "timestamp":1438267062584}, …]
//
// The signature is the one of the IM hooks (see the package documentation;
// [Verify] checks it); LeanCloud documents none for this webhook. A 2xx
// reply is success, its body ignored. Each attempt has SysConfig.Timeout
// (5 s, LeanCloud's); a failed one (transport error, timeout, other status)
// is retried at most SysConfig.Retries times (3, LeanCloud's) after a
// doubling backoff, then the batch is lost. The queue is bounded: a message
// arriving when it is full is dropped. Losses and drops are counted
// (SysStats), never retried later: the webhook is at most once.

// SysHookName is the X-Relaymesh-Hook value of the service webhook.
const SysHookName = "_sysMessage"

// Defaults of SysConfig.
const (
	DefaultSysTimeout   = 5 * time.Second
	DefaultSysRetries   = 3
	DefaultSysBackoff   = 200 * time.Millisecond
	DefaultSysQueueSize = 4096
	DefaultSysMaxBatch  = 100
	DefaultSysWorkers   = 2
)

// Pointer is a LeanCloud storage pointer.
type Pointer struct {
	Type      string `json:"__type"` // "Pointer"
	ClassName string `json:"className"`
	ObjectID  string `json:"objectId"`
}

// Date is a LeanCloud storage date.
type Date struct {
	Type string `json:"__type"` // "Date"
	ISO  string `json:"iso"`
}

// SysMessage is one element of the webhook's array: a _SysMessage row, plus
// timestamp (ms), which LeanCloud's row has as a column.
type SysMessage struct {
	FromIP    string  `json:"fromIp"`
	Conv      Pointer `json:"conv"`
	MsgID     string  `json:"msgId"`
	From      string  `json:"from"`
	Bin       bool    `json:"bin"`
	Data      string  `json:"data"` // base64 when Bin
	CreatedAt Date    `json:"createdAt"`
	UpdatedAt Date    `json:"updatedAt"`
	Timestamp int64   `json:"timestamp"`
}

// NewSysMessage builds the element for message msgID that from sent to
// system conversation cid at t (ms); fromIP may be empty.
func NewSysMessage(cid, msgID, from, data string, bin bool, t int64, fromIP string) SysMessage {
	d := Date{Type: "Date", ISO: lcpb.FormatDate(t)}
	return SysMessage{FromIP: fromIP, Conv: Pointer{Type: "Pointer", ClassName: "_Conversation", ObjectID: cid},
		MsgID: msgID, From: from, Bin: bin, Data: data, CreatedAt: d, UpdatedAt: d, Timestamp: t}
}

// SysApp is one app's webhook.
type SysApp struct {
	URL       string
	MasterKey string // signs requests; empty sends them unsigned
	HookKey   string // sent as X-LC-Hook-Key when set
}

// SysConfig configures a SysWebhook; zero fields take the defaults.
type SysConfig struct {
	Apps       map[string]SysApp // by appId; apps not listed have no webhook
	Timeout    time.Duration     // per attempt
	Retries    int               // after the first attempt; negative: none
	Backoff    time.Duration     // before the first retry, doubled for each next
	QueueSize  int               // messages waiting at most
	MaxBatch   int               // messages per request at most
	Workers    int               // requests in flight at most
	HTTPClient *http.Client
	Now        func() time.Time // the signature's timestamp
	Logger     *slog.Logger     // failures at Debug
}

// SysStats are a SysWebhook's counters.
type SysStats struct {
	Enqueued  int64 // messages accepted
	Dropped   int64 // messages refused: queue full or closed
	Sent      int64 // messages delivered (2xx)
	Requests  int64 // attempts made
	Failures  int64 // attempts failed, timeouts included
	Timeouts  int64 // attempts that ran out of time
	Retries   int64 // attempts that were retries
	Lost      int64 // messages given up: retries exhausted, or canceled by Close
	Discarded int64 // messages still waiting at Close
	Waiting   int   // messages waiting now
}

type sysItem struct {
	app string
	m   SysMessage
}

// SysWebhook posts service-conversation messages to the apps' webhooks. It
// is safe for concurrent use; Enqueue never blocks. Close stops it.
type SysWebhook struct {
	cfg  SysConfig         // read-only after NewSysWebhook
	apps map[string]SysApp // read-only after NewSysWebhook
	q    chan sysItem      // the bounded queue; never closed
	ctx  context.Context   // canceled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup // the workers

	closed atomic.Bool

	enqueued, dropped, sent, requests, failures, timeouts, retries, lost, discarded atomic.Int64
}

// NewSysWebhook starts the workers of cfg. The configuration is copied.
func NewSysWebhook(cfg SysConfig) *SysWebhook {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSysTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultSysRetries
	}
	cfg.Retries = max(cfg.Retries, 0)
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultSysBackoff
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultSysQueueSize
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultSysMaxBatch
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultSysWorkers
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &SysWebhook{cfg: cfg, apps: make(map[string]SysApp, len(cfg.Apps)), q: make(chan sysItem, cfg.QueueSize)}
	for id, a := range cfg.Apps {
		if a.URL != "" {
			w.apps[id] = a
		}
	}
	w.cfg.Apps = nil
	w.ctx, w.stop = context.WithCancel(context.Background())
	for range cfg.Workers {
		w.wg.Go(w.worker)
	}
	return w
}

// Enabled reports whether appID has a webhook.
func (w *SysWebhook) Enabled(appID string) bool {
	_, ok := w.apps[appID]
	return ok
}

// Enqueue queues m for appID's webhook without blocking. It reports false,
// counting a drop, when the queue is full or closed; it ignores (false, not
// counted) apps without a webhook.
func (w *SysWebhook) Enqueue(appID string, m SysMessage) bool {
	if !w.Enabled(appID) {
		return false
	}
	if w.closed.Load() {
		w.dropped.Add(1)
		return false
	}
	select {
	case w.q <- sysItem{appID, m}:
		w.enqueued.Add(1)
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// Close cancels the requests in flight, discards the waiting messages and
// returns once the workers have exited.
func (w *SysWebhook) Close() {
	if w.closed.Swap(true) {
		return
	}
	w.stop()
	w.wg.Wait()
	for {
		select {
		case <-w.q:
			w.discarded.Add(1)
		default:
			return
		}
	}
}

// Stats returns the counters.
func (w *SysWebhook) Stats() SysStats {
	return SysStats{
		Enqueued: w.enqueued.Load(), Dropped: w.dropped.Load(), Sent: w.sent.Load(), Requests: w.requests.Load(),
		Failures: w.failures.Load(), Timeouts: w.timeouts.Load(), Retries: w.retries.Load(), Lost: w.lost.Load(),
		Discarded: w.discarded.Load(), Waiting: len(w.q),
	}
}

func (w *SysWebhook) worker() {
	for {
		var first sysItem
		select {
		case <-w.ctx.Done():
			return
		case first = <-w.q:
		}
		batch := []sysItem{first}
	fill:
		for len(batch) < w.cfg.MaxBatch {
			select {
			case it := <-w.q:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		// One request per app, apps in the order they first appear.
		var order []string
		byApp := map[string][]SysMessage{}
		for _, it := range batch {
			if _, ok := byApp[it.app]; !ok {
				order = append(order, it.app)
			}
			byApp[it.app] = append(byApp[it.app], it.m)
		}
		for _, app := range order {
			w.deliver(app, byApp[app])
		}
	}
}

// deliver posts msgs to app's webhook, retrying.
func (w *SysWebhook) deliver(app string, msgs []SysMessage) {
	body, err := json.Marshal(msgs)
	if err != nil { // cannot happen: plain strings and numbers
		w.lost.Add(int64(len(msgs)))
		return
	}
	wait := w.cfg.Backoff
	for attempt := 0; attempt <= w.cfg.Retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(wait)
			select {
			case <-w.ctx.Done():
				t.Stop()
				w.lost.Add(int64(len(msgs)))
				return
			case <-t.C:
			}
			wait *= 2
			w.retries.Add(1)
		}
		w.requests.Add(1)
		err := w.post(app, body)
		if err == nil {
			w.sent.Add(int64(len(msgs)))
			return
		}
		w.failures.Add(1)
		if errors.Is(err, ErrTimeout) {
			w.timeouts.Add(1)
		}
		w.cfg.Logger.LogAttrs(w.ctx, slog.LevelDebug, "service webhook failed",
			slog.String("app", app), slog.Int("messages", len(msgs)), slog.Int("attempt", attempt+1), slog.Any("err", err))
		if w.ctx.Err() != nil {
			break
		}
	}
	w.lost.Add(int64(len(msgs)))
}

// post makes one attempt.
func (w *SysWebhook) post(app string, body []byte) error {
	a := w.apps[app]
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("hooks: service webhook of app %s: building request: %w", app, err)
	}
	setHeaders(req.Header, app, a.HookKey, a.MasterKey, SysHookName, w.cfg.Now(), body) // sign.go
	timedOut := func() bool { return ctx.Err() == context.DeadlineExceeded && w.ctx.Err() == nil }
	resp, err := w.cfg.HTTPClient.Do(req)
	if err != nil {
		if timedOut() {
			return fmt.Errorf("%w: service webhook of app %s after %v", ErrTimeout, app, w.cfg.Timeout)
		}
		return fmt.Errorf("%w: service webhook of app %s: %w", ErrFailed, app, err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxReplyBytes))
	if err != nil && timedOut() {
		return fmt.Errorf("%w: service webhook of app %s after %v reading the reply", ErrTimeout, app, w.cfg.Timeout)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: service webhook of app %s: %w %d", ErrFailed, app, ErrStatus, resp.StatusCode)
	}
	return nil
}
