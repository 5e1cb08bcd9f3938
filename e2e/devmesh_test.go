package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
)

// TestDevMeshInProcess: relaymesh dev's edge and core share a process and
// talk in memory (mesh.InProcess) unless MeshOverQUIC; either way a login,
// a send, its push and its receipt work, and 100 messages sent at once by
// two senders into one conversation all arrive once, in each sender's
// order.
func TestDevMeshInProcess(t *testing.T) {
	for _, overQUIC := range []bool{false, true} {
		t.Run(fmt.Sprintf("overQUIC=%v", overQUIC), func(t *testing.T) {
			d, _ := startDevWith(t, cluster.DevConfig{NoWebTransport: true, MeshOverQUIC: overQUIC})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dial := func(id string) *client.Client {
				c, err := client.Dial(ctx, d.Edge.URL, client.Options{AppID: "devmesh", ClientID: id})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			alice, bob, carol := dial("alice"), dial("bob"), dial("carol")
			cid, err := alice.CreateConversation(ctx, []string{"bob", "carol"}, "g", nil, false)
			if err != nil {
				t.Fatal(err)
			}
			const each = 50 // under the default 60 sends a minute per session
			errs := make(chan error, 2)
			for _, c := range []*client.Client{alice, carol} {
				go func() {
					for i := range each {
						if _, err := c.Send(ctx, cid, fmt.Sprintf("%s-%03d", c.ID(), i), client.SendOptions{}); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			next := map[string]int{}
			for got := 0; got < 2*each; {
				select {
				case ev := <-bob.Events():
					m, ok := ev.(client.Message)
					if !ok {
						continue
					}
					want := fmt.Sprintf("%s-%03d", m.From, next[m.From])
					if m.Text != want {
						t.Fatalf("bob got %q from %s, want %q (in order, once)", m.Text, m.From, want)
					}
					next[m.From]++
					got++
				case <-ctx.Done():
					t.Fatalf("bob got %v of %d messages", next, 2*each)
				}
			}
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			mem := d.Edge.Node.InProcessCalls()
			if !overQUIC && mem == 0 {
				t.Error("the dev edge made no call to its core in memory")
			}
			if overQUIC && mem != 0 {
				t.Errorf("MeshOverQUIC: the dev edge made %d calls in memory, want none", mem)
			}
			t.Logf("edge calls and streams in memory: %d", mem)
		})
	}
}
