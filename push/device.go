package push

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/relaymesh/relaymesh/metric"
)

// Device is one registered device of a receiver, as the core resolves it
// from the shard's device registry (LeanCloud's _Installation). Providers
// that talk to a push service (APNs, FCM) send to the devices of their
// service; the webhook gets them in the request body.
type Device struct {
	ID       string `json:"objectId"`             // the installation's objectId
	ClientID string `json:"clientId"`             // the receiver the push is for
	Type     string `json:"deviceType"`           // ios, android, …
	Token    string `json:"token"`                // APNs deviceToken or FCM registrationId
	Vendor   string `json:"vendor,omitempty"`     // Android push vendor ("fcm", "" …)
	Topic    string `json:"apnsTopic,omitempty"`  // APNs topic (bundle id) the device registered
	TeamID   string `json:"apnsTeamId,omitempty"` // APNs team the device registered
	// Badge is the device's badge after this push's "Increment" (APNs);
	// 0 when the payload has no "Increment" or the count is unknown.
	Badge int64 `json:"badge,omitempty"`
}

// Services a device can be pushed through.
const (
	ServiceAPNs = "apns"
	ServiceFCM  = "fcm"
)

// appleTypes are the deviceType values of LeanCloud's Apple SDKs
// (Swift LCInstallation sets ios, macos, tvos or watchos).
var appleTypes = map[string]bool{"ios": true, "macos": true, "tvos": true, "watchos": true, "visionos": true}

// Service names the push service that reaches d: ServiceAPNs for Apple
// devices, ServiceFCM for Android devices registered through FCM (vendor
// "fcm", or no vendor with a registrationId), "" for anything else (another
// vendor's token, LeanCloud's own Android channel, no token).
func (d Device) Service() string {
	if d.Token == "" {
		return ""
	}
	switch {
	case appleTypes[d.Type]:
		return ServiceAPNs
	case d.Type == "android" && (d.Vendor == "" || strings.EqualFold(d.Vendor, "fcm")):
		return ServiceFCM
	}
	return ""
}

// IsApple reports whether deviceType names an Apple platform.
func IsApple(deviceType string) bool { return appleTypes[deviceType] }

// Bounds of an APNs device token (IsAPNsToken): 32 bytes today, longer
// allowed by Apple; the registry keeps identifiers up to 512 characters.
const (
	MinAPNsToken = 64
	MaxAPNsToken = 512
)

// IsAPNsToken reports whether s looks like an APNs device token: hex, of
// even length, MinAPNsToken to MaxAPNsToken characters. A UDID (with
// dashes) is not one.
func IsAPNsToken(s string) bool {
	if len(s) < MinAPNsToken || len(s)%2 != 0 || len(s) > MaxAPNsToken {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// queueDevices queues one request on q for each device of r that service
// takes (Device.Service); it never blocks.
func queueDevices(ctx context.Context, q *Queue, r Request, service string) error {
	for _, d := range r.Devices {
		if d.Service() != service {
			continue
		}
		one := r
		one.Devices = []Device{d}
		if err := q.Push(ctx, one); err != nil {
			return err
		}
	}
	return nil
}

// DeviceSink learns what the push services said about devices. The core
// implements it: it removes a device whose token the service called
// invalid or unregistered, unless the device got another token meanwhile.
// It may block (it proposes to the shard); providers call it from their
// own workers.
type DeviceSink interface {
	Invalid(ctx context.Context, app string, d Device, reason string)
}

// ProviderStats are the counters of one provider, in devices (APNs, FCM)
// or requests (webhook, log).
type ProviderStats struct {
	Sent    int64 // accepted by the service
	Failed  int64 // given up: refused, or out of retries
	Retried int64 // attempts after the first
	Invalid int64 // the service called the token invalid; the device was handed to the sink
	Dropped int64 // dropped before any attempt: the provider's queue was full
	Skipped int64 // not sent: unusable payload, or the device is not for this provider
	Waiting int   // queued now
	// Attempts is how long each attempt at a device took (one request
	// to the service, whatever its answer).
	Attempts metric.LatencySnapshot
}

// Add sums o into s.
func (s *ProviderStats) Add(o ProviderStats) {
	s.Sent += o.Sent
	s.Failed += o.Failed
	s.Retried += o.Retried
	s.Invalid += o.Invalid
	s.Dropped += o.Dropped
	s.Skipped += o.Skipped
	s.Waiting += o.Waiting
	s.Attempts.Add(o.Attempts)
}

// counters are a device provider's counters.
type counters struct {
	sent, failed, retried, invalid, skipped atomic.Int64
	attempts                                metric.Latency
}

func (c *counters) stats(q *Queue) ProviderStats {
	s := ProviderStats{Sent: c.sent.Load(), Failed: c.failed.Load(), Retried: c.retried.Load(),
		Invalid: c.invalid.Load(), Skipped: c.skipped.Load(), Attempts: c.attempts.Snapshot()}
	if q != nil {
		qs := q.Stats()
		s.Dropped, s.Waiting = qs.Dropped+qs.Discarded, qs.Waiting
	}
	return s
}
