package push

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkAPNsMessage: LeanCloud payload -> APNs body, per device.
func BenchmarkAPNsMessage(b *testing.B) {
	p := json.RawMessage(`{"alert":"Alice: see you at 8","title":"Chat","badge":"Increment","sound":"default","ios":{"thread-id":"c1"},"convId":"5f1e…","_profile":"dev"}`)
	d := iosDevice()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apnsMessage(p, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAPNsThroughput: devices pushed through Push (queue, 8 workers,
// one HTTP/2 connection) to a fake APNs on loopback, until all are sent.
func BenchmarkAPNsThroughput(b *testing.B) {
	e := newAPNsEnv(b, nil)
	req := e.req(`{"alert":"hi","sound":"default"}`, iosDevice())
	b.ResetTimer()
	for i := range b.N {
		d := iosDevice()
		d.ID, d.Token = fmt.Sprint(i), fmt.Sprintf("%064x", i)
		req.Devices = []Device{d}
		for e.a.Stats().Waiting >= DefaultDeviceQueue/2 { // never drop: measure sends
			time.Sleep(time.Millisecond)
		}
		if err := e.a.Push(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	for e.a.Stats().Sent+e.a.Stats().Failed < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	if s := e.a.Stats(); s.Sent != int64(b.N) {
		b.Fatalf("stats %+v", s)
	}
}
