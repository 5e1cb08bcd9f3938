package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// TestTwoRegionsLoginWaitsForItsRegions: with the regions 150 ms apart one
// way, a login in region 1 waits for region 2's share only when the
// catalog's member index names the client there; a share it did not wait
// for still reaches the client, pushed after session/opened: unread counts
// of a conversation the index did not know of yet, and an event pushed in
// region 2 before region 2 knew the client was online (core/missed.go).
func TestTwoRegionsLoginWaitsForItsRegions(t *testing.T) {
	const apart = 150 * time.Millisecond
	w := startTwoRegionsApart(t, apart)
	const app = "login-regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	r1 := w.cores[0]
	counter := func(name string) func() int64 {
		return func() int64 { return metricOf(t, r1, "relaymesh_router_"+name+"_total") }
	}
	awaited, notAwaited, late := counter("login_regions_awaited"), counter("login_regions_not_awaited"), counter("login_late_pushes")
	inRegion2 := func(peer string) bool { // r1's replica of the member index
		refs, err := r1.Catalog.MemberShards(app, peer)
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range refs {
			if ref.Region == 2 {
				return true
			}
		}
		return false
	}
	unreadOf := func(c *client.Client, cid string) int {
		t.Helper()
		return nextEvent(t, c, func(u client.Unread) bool {
			for _, x := range u.Convs {
				if x.ConvID == cid {
					return true
				}
			}
			return false
		}).Convs[0].Count
	}
	bob := dial(t, ctx, w.edges[1].URL, app, "bob") // region 2

	t.Run("a client with conversations in region 2 waits for its share", func(t *testing.T) {
		cid, err := bob.CreateConversation(ctx, []string{"amy"}, "with amy", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Send(ctx, cid, client.TextMessage("for amy"), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, func() bool { return inRegion2("amy") })
		a0, n0, l0 := awaited(), notAwaited(), late()
		start := time.Now()
		amy := dial(t, ctx, w.edges[0].URL, app, "amy")
		t.Logf("login waiting for region 2: %v", time.Since(start))
		if a, n := awaited()-a0, notAwaited()-n0; a != 1 || n != 0 {
			t.Fatalf("amy's login waited for %d regions and not for %d; want 1 and 0", a, n)
		}
		if got := unreadOf(amy, cid); got != 1 {
			t.Fatalf("amy's unread in %s: %d, want 1", cid, got)
		}
		if l := late() - l0; l != 0 {
			t.Fatalf("%d commands pushed late for a login that waited", l)
		}
	})

	t.Run("nothing in region 2: not waited for, and an event pushed meanwhile still arrives", func(t *testing.T) {
		if inRegion2("zed") {
			t.Fatal("zed has nothing in region 2 yet")
		}
		a0, n0, l0 := awaited(), notAwaited(), late()
		start := time.Now()
		zed := dial(t, ctx, w.edges[0].URL, app, "zed")
		t.Logf("login not waiting for region 2: %v (a round trip between the regions: %v)", time.Since(start), 2*apart)
		if a, n := awaited()-a0, notAwaited()-n0; a != 0 || n != 1 {
			t.Fatalf("zed's login waited for %d regions and not for %d; want 0 and 1", a, n)
		}
		// At once, before zed's share request reaches region 2 and marks
		// zed online there: nothing pushes these to region 1 but the
		// share (core/missed.go), in the order region 2 pushed them.
		cid, err := bob.CreateConversation(ctx, []string{"zed"}, "with zed", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		first, err := bob.Send(ctx, cid, client.TextMessage("at once"), client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		deadline := time.After(10 * time.Second)
		for len(got) < 2 {
			select {
			case ev := <-zed.Events():
				switch e := ev.(type) {
				case client.ConvEvent:
					if e.ConvID == cid {
						got = append(got, e.Op)
					}
				case client.Message:
					if e.ConvID == cid {
						got = append(got, "message "+e.ID)
					}
				}
			case <-deadline:
				t.Fatalf("zed got %v of region 2's pushes made during its login; want joined, then %s", got, first.ID)
			}
		}
		if want := []string{"joined", "message " + first.ID}; !slices.Equal(got, want) {
			t.Fatalf("zed got %v, want %v", got, want)
		}
		if l := late() - l0; l < 2 {
			t.Fatalf("the pushes came, but %d were pushed late, want 2 or more", l)
		}
		if u := nextEvent(t, zed, func(u client.Unread) bool { return len(u.Convs) > 0 && u.Convs[0].ConvID == cid }); u.Convs[0].Count != 1 {
			t.Fatalf("zed's unread in %s after the late pushes: %d, want 1", cid, u.Convs[0].Count)
		}
		// From then on region 2 pushes to zed as to any client online.
		sent, err := bob.Send(ctx, cid, client.TextMessage("live"), client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := nextEvent(t, zed, func(m client.Message) bool { return m.ConvID == cid }); m.ID != sent.ID {
			t.Fatalf("zed got %s, want %s", m.ID, sent.ID)
		}
	})

	t.Run("a conversation the index does not know yet: its unread comes after the login", func(t *testing.T) {
		cid, err := bob.CreateConversation(ctx, []string{"kim"}, "with kim", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Send(ctx, cid, client.TextMessage("for kim"), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		// The index reaches region 1 a catalog commit later, across the
		// 150 ms: not before this login reads it.
		if inRegion2("kim") {
			t.Fatal("region 1's member index names kim in region 2 already; the test needs it not to")
		}
		n0, l0 := notAwaited(), late()
		start := time.Now()
		kim := dial(t, ctx, w.edges[0].URL, app, "kim")
		opened := time.Since(start)
		if n := notAwaited() - n0; n != 1 {
			t.Fatalf("kim's login did not wait for %d regions, want 1", n)
		}
		if got := unreadOf(kim, cid); got != 1 {
			t.Fatalf("kim's unread in %s: %d, want 1", cid, got)
		}
		t.Logf("kim: session/opened after %v, the late unread after %v (a round trip between the regions: %v)", opened, time.Since(start), 2*apart)
		if l := late() - l0; l < 1 {
			t.Fatalf("kim's unread came, but not pushed late (%d)", l)
		}
	})
}
