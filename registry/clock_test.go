package registry

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// skews are the clocks of the nodes of the tests of skew: from ten minutes
// behind the store's to ten minutes ahead.
var skews = []time.Duration{-10 * time.Minute, -5 * time.Minute, 0, 5 * time.Minute, 10 * time.Minute}

// Nodes whose clocks differ from each other and from the store's by up to
// ten minutes, on a directory and on an S3 server (each on its own, real
// clock): no node purges or skips a live entry, none keeps joining one
// that stopped being rewritten for longer than the expiry, and the role
// choice still gives exactly the configured number of servers, one of
// them bootstrapping.
func TestRegistryClockSkew(t *testing.T) {
	ctx := context.Background()
	const expiry = 2 * time.Second
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			r, _ := st.open(t)
			ids := make([]string, len(skews))
			for i, d := range skews {
				ids[i] = fmt.Sprintf("node-%d", i)
				if err := r.Put(ctx, entryAt(ids[i], time.Now().Add(d))); err != nil {
					t.Fatal(err)
				}
			}
			es, err := r.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range skews {
				now := time.Now().Add(d) // this node's clock
				if got := JoinAddrs(es, ids[i], now, expiry); len(got) != len(skews)-1 {
					t.Errorf("%s (clock %v): joins through %d entries, want %d (all others live)", ids[i], d, len(got), len(skews)-1)
				}
				if n, err := Purge(ctx, r, es, now, expiry); n != 0 || err != nil {
					t.Fatalf("%s (clock %v): purged %d live entries (%v)", ids[i], d, n, err)
				}
			}

			// The node ten minutes ahead stops writing: its entry expires for
			// every node after the expiry by the store's clock (a second
			// more for S3, whose times have whole seconds).
			silent := time.Now()
			deadline := silent.Add(expiry + 2*time.Second)
			for {
				for i, d := range skews[:len(skews)-1] {
					if err := r.Put(ctx, entryAt(ids[i], time.Now().Add(d))); err != nil {
						t.Fatal(err)
					}
				}
				es, err := r.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				joined := 0
				for i, d := range skews[:len(skews)-1] {
					if slices.Contains(JoinAddrs(es, ids[i], time.Now().Add(d), expiry), entryAt(ids[4], time.Time{}).Addr) {
						joined++
					}
				}
				if joined == 0 {
					break
				}
				if time.Since(silent) < expiry-time.Second-100*time.Millisecond && joined != len(skews)-1 {
					t.Fatalf("%d of %d nodes saw the entry expire %v after its last write (expiry %v)", len(skews)-1-joined, len(skews)-1, time.Since(silent), expiry)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d nodes still join through an entry not rewritten for %v (expiry %v)", joined, time.Since(silent), expiry)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("the silent node's entry expired for every node %v after its last write (expiry %v)", time.Since(silent).Round(10*time.Millisecond), expiry)
		})
	}
}

// Five nodes with clocks spread over ±10 minutes choose their roles at
// once, 20 times: exactly 3 servers, on slots 0 to 2, one bootstrapping.
func TestChooseClockSkew(t *testing.T) {
	const servers, reps = 3, 20
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			for rep := range reps {
				r, _ := st.open(t)
				ds := make([]Decision, len(skews))
				errs := make([]error, len(skews))
				var wg sync.WaitGroup
				for i, d := range skews {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ds[i], errs[i] = Choose(context.Background(), r, entryAt(fmt.Sprintf("node-%d", i), time.Now().Add(d)), servers, time.Minute)
					}()
				}
				wg.Wait()
				var slots []int
				boot := 0
				for i, d := range ds {
					if errs[i] != nil {
						t.Fatalf("rep %d: node-%d: %v", rep, i, errs[i])
					}
					if d.Role == RoleServer {
						slots = append(slots, d.Slot)
					}
					if d.Bootstrap {
						boot++
					}
				}
				slices.Sort(slots)
				if !slices.Equal(slots, []int{0, 1, 2}) || boot != 1 {
					t.Fatalf("rep %d: server slots %v, %d bootstrapping; want [0 1 2] and 1", rep, slots, boot)
				}
				// Each decides again with its own clock: nobody takes over a
				// slot of a live server.
				for i, d := range skews {
					d2, err := Choose(context.Background(), r, entryAt(fmt.Sprintf("node-%d", i), time.Now().Add(d)), servers, time.Minute)
					if err != nil || d2.Role != ds[i].Role || d2.Slot != ds[i].Slot {
						t.Fatalf("rep %d: node-%d (clock %v) chose again %+v (%v), first %+v", rep, i, d, d2, err, ds[i])
					}
				}
			}
		})
	}
}
