package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestChooseRace is the seed's race, gone: 20 nodes choose at the same
// instant on a fresh registry that wants 3 servers, 50 times on each store;
// every time exactly 3 are servers, on slots 0, 1 and 2, and exactly one,
// slot 0's, bootstraps.
func TestChooseRace(t *testing.T) {
	const (
		nodes   = 20
		servers = 3
		reps    = 50
		expiry  = time.Minute
	)
	type opener func(t *testing.T, rep int) Registry
	var f *fakeS3
	for _, tc := range []struct {
		name string
		open opener
	}{
		{"file", func(t *testing.T, _ int) Registry { return NewFile(t.TempDir()) }},
		{"s3", func(t *testing.T, rep int) Registry {
			if f == nil {
				f = startFakeS3(t, "bucket")
			}
			return f.open(t, "bucket", fmt.Sprintf("race/%d", rep))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f = nil
			for rep := range reps {
				r := tc.open(t, rep)
				now := time.Now()
				ds := make([]Decision, nodes)
				errs := make([]error, nodes)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range nodes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						ds[i], errs[i] = Choose(context.Background(), r, entryAt(fmt.Sprintf("node-%02d", i), now), servers, expiry)
					}()
				}
				close(start)
				wg.Wait()
				var slots []int
				bootstraps := 0
				for i, d := range ds {
					if errs[i] != nil {
						t.Fatalf("rep %d: node %d: %v", rep, i, errs[i])
					}
					switch d.Role {
					case RoleServer:
						slots = append(slots, d.Slot)
					case RoleAgent:
						if d.Bootstrap || d.Slot != -1 || len(d.Servers) != servers {
							t.Fatalf("rep %d: an agent with %+v", rep, d)
						}
					default:
						t.Fatalf("rep %d: role %q", rep, d.Role)
					}
					if d.Bootstrap {
						bootstraps++
						if d.Slot != 0 || len(d.Servers) != 0 {
							t.Fatalf("rep %d: the bootstrap server has %+v", rep, d)
						}
					}
				}
				slices.Sort(slots)
				if !slices.Equal(slots, []int{0, 1, 2}) || bootstraps != 1 {
					t.Fatalf("rep %d: servers on slots %v, %d bootstrapping; want [0 1 2] and 1", rep, slots, bootstraps)
				}
				// The store agrees with the decisions.
				es, err := r.List(context.Background())
				if err != nil || len(es) != servers {
					t.Fatalf("rep %d: List: %+v, %v", rep, es, err)
				}
				for _, e := range es {
					var i int
					fmt.Sscanf(e.ID, "node-%d", &i)
					if ds[i].Slot != e.Slot || ds[i].Bootstrap != e.Bootstrap || e.Role != RoleServer {
						t.Fatalf("rep %d: slot %d holds %+v, but that node decided %+v", rep, e.Slot, e, ds[i])
					}
				}
			}
		})
	}
}

// TestChooseTakeover: a server that stops renewing loses its slot after
// the expiry; the next node takes it over and joins the live servers
// rather than bootstrapping, and the old holder's renewal fails.
func TestChooseTakeover(t *testing.T) {
	const expiry = 2 * time.Minute
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ctx := context.Background()
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			clk := newStoreClock(t0) // each node's clock agrees with the store's here
			r, _ := st.openAt(t, clk)
			choose := func(id string, at time.Time) Decision {
				t.Helper()
				clk.set(at)
				d, err := Choose(ctx, r, entryAt(id, at), 3, expiry)
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			a, b, c := choose("a", t0), choose("b", t0.Add(time.Second)), choose("c", t0.Add(2*time.Second))
			if a.Role != RoleServer || !a.Bootstrap || a.Slot != 0 || len(a.Servers) != 0 {
				t.Fatalf("the first node: %+v; want the bootstrap server on slot 0", a)
			}
			if b.Role != RoleServer || b.Bootstrap || b.Slot != 1 || len(b.Servers) != 1 || b.Servers[0].ID != "a" {
				t.Fatalf("the second node: %+v; want a server on slot 1 that knows a", b)
			}
			if c.Slot != 2 || c.Bootstrap || len(c.Servers) != 2 {
				t.Fatalf("the third node: %+v", c)
			}
			if d := choose("d", t0.Add(3*time.Second)); d.Role != RoleAgent || len(d.Servers) != 3 {
				t.Fatalf("the fourth node: %+v; want an agent that knows 3 servers", d)
			}
			// b and c renew; a is silent.
			t1 := t0.Add(expiry / 2)
			clk.set(t1)
			for id, d := range map[string]Decision{"b": b, "c": c} {
				if err := Renew(ctx, r, entryAt(id, t1), d, expiry); err != nil {
					t.Fatalf("renewing %s: %v", id, err)
				}
			}
			if d := choose("e", t0.Add(expiry-time.Second)); d.Role != RoleAgent {
				t.Fatalf("a node before a's slot expires: %+v; want an agent", d)
			}
			t2 := t0.Add(expiry + time.Second)
			e := choose("e", t2)
			if e.Role != RoleServer || e.Slot != 0 || e.Bootstrap || len(e.Servers) != 2 {
				t.Fatalf("a node after a's slot expired: %+v; want a server on slot 0, not bootstrapping, knowing b and c", e)
			}
			clk.set(t2)
			if err := Renew(ctx, r, entryAt("a", t2), a, expiry); !errors.Is(err, ErrTaken) {
				t.Fatalf("a's renewal after the takeover: %v, want ErrTaken", err)
			}
			// A restarted server (same ID) gets its own slot back.
			if d := choose("c", t2.Add(time.Second)); d.Role != RoleServer || d.Slot != 2 {
				t.Fatalf("c restarted: %+v; want its slot 2 back", d)
			}
			// When every server is gone, the next node bootstraps anew.
			if d := choose("f", t2.Add(expiry+time.Second)); d.Role != RoleServer || d.Slot != 0 || !d.Bootstrap {
				t.Fatalf("after every server expired: %+v; want the bootstrap server on slot 0", d)
			}
		})
	}
}

func TestChooseBadArgs(t *testing.T) {
	if _, err := Choose(context.Background(), NewFile(t.TempDir()), entryAt("a", time.Now()), 0, time.Minute); err == nil {
		t.Fatal("Choose with 0 servers succeeded")
	}
	if err := Renew(context.Background(), NewFile(t.TempDir()), entryAt("a", time.Now()), Decision{Role: RoleAgent, Slot: -1}, time.Minute); err != nil {
		t.Fatalf("Renew of an agent: %v", err)
	}
}
