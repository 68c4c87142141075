package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/internal/memnet"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func req(node, id string, at time.Duration) Request {
	return Request{Label: "es", ServiceID: id, Node: node, At: t0.Add(at)}
}

// The rule: the earliest request by (time, node, service ID) holds the
// lease once it has settled; a later one never does while an earlier is
// known; other labels do not count.
func TestHolds(t *testing.T) {
	a, b, c := req("n1", "a", 0), req("n2", "b", time.Second), req("n0", "c", 0)
	other := Request{Label: "db", ServiceID: "x", Node: "n9", At: t0.Add(-time.Hour)}
	settle := 5 * time.Second
	all := []Request{b, a, other}
	for _, tc := range []struct {
		name string
		reqs []Request
		mine Request
		now  time.Duration
		want bool
	}{
		{"earliest, settled", all, a, 5 * time.Second, true},
		{"earliest, not settled yet", all, a, 4 * time.Second, false},
		{"later request waits", all, b, time.Hour, false},
		{"alone once the earlier one is gone", []Request{b}, b, 6 * time.Second, true},
		{"not yet seen by itself: the rule still holds", []Request{b, other}, a, 5 * time.Second, true},
		{"same time: lower node first", []Request{a, c}, c, 5 * time.Second, true},
		{"same time: higher node waits", []Request{a, c}, a, 5 * time.Second, false},
	} {
		if got := Holds(tc.reqs, tc.mine, t0.Add(tc.now), settle); got != tc.want {
			t.Errorf("%s: Holds = %v, want %v", tc.name, got, tc.want)
		}
	}
	if q := Queue(all, "es"); len(q) != 2 || q[0] != a || q[1] != b {
		t.Errorf("Queue = %+v", q)
	}
}

func TestBadNames(t *testing.T) {
	l := New(nil, Options{})
	for _, names := range [][2]string{{"", "x"}, {"es", ""}, {"a/b", "x"}, {"es", "x/y"}, {"es", strings.Repeat("x", 200)}} {
		if err := l.Acquire(context.Background(), names[0], names[1]); !errors.Is(err, ErrBadName) {
			t.Errorf("Acquire(%q, %q) = %v", names[0], names[1], err)
		}
		if err := l.Release(names[0], names[1]); !errors.Is(err, ErrBadName) {
			t.Errorf("Release(%q, %q) = %v", names[0], names[1], err)
		}
	}
}

// cluster starts n nodes on an in-memory network with 10 ms rounds, all
// joined, and returns them once each sees all alive.
func cluster(t *testing.T, n int) []*scuttlebutt.Node {
	t.Helper()
	net := memnet.New()
	var nodes []*scuttlebutt.Node
	for i := range n {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = fmt.Sprintf("node-%d", i)
		cfg.GossipInterval = 10 * time.Millisecond
		cfg.Transport = net.Listen()
		nd, err := scuttlebutt.Create(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		if i > 0 {
			if err := nd.Seed([]string{nodes[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, nd)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range nodes {
		for {
			alive := 0
			for _, ni := range nd.Nodes() {
				if ni.Status == scuttlebutt.StatusAlive {
					alive++
				}
			}
			if alive == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d of %d nodes alive", nd.ID(), alive, n)
			}
			time.Sleep(5 * time.Millisecond) // polling the cluster's formation
		}
	}
	return nodes
}

// Ten candidates on five nodes race for a label, fifty times (five labels
// at a time): never two holders at once, and every candidate holds it, in
// the order of the requests. Rounds are 10 ms and a request reaches every
// node in a few of them; Spread is 300 ms all the same, because the
// guarantee holds only while the settle window outlasts the real spread,
// and on a loaded 2-core CI machine under -race goroutines stall for
// longer than 100 ms (with 100 ms, two holders were seen there).
func TestTenCandidatesTakeTurns(t *testing.T) {
	nodes := cluster(t, 5)
	opt := Options{Spread: 300 * time.Millisecond, Skew: time.Millisecond, Poll: 10 * time.Millisecond}
	var leases []*Leases
	for _, nd := range nodes {
		leases = append(leases, New(nd, opt))
	}
	const reps, parallel, candidates = 50, 5, 10
	for batch := 0; batch < reps; batch += parallel {
		var wg sync.WaitGroup
		for r := batch; r < batch+parallel; r++ {
			label := fmt.Sprintf("es%d", r)
			var mu sync.Mutex
			holders := 0
			var order []Request
			for c := range candidates {
				l := leases[c%len(leases)]
				id := fmt.Sprintf("svc-%d", c)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					if err := l.Acquire(ctx, label, id); err != nil {
						t.Errorf("%s %s: %v", label, id, err)
						return
					}
					mine, _ := l.own(label, id)
					mu.Lock()
					holders++
					if holders != 1 {
						t.Errorf("%s: %d holders at once (%s came in)", label, holders, id)
					}
					order = append(order, mine)
					mu.Unlock()
					time.Sleep(20 * time.Millisecond) // the holder's service starting
					mu.Lock()
					holders--
					mu.Unlock()
					if err := l.Release(label, id); err != nil {
						t.Errorf("%s %s: release: %v", label, id, err)
					}
				}()
			}
			defer func() {
				if len(order) != candidates {
					t.Errorf("%s: %d of %d candidates held the lease", label, len(order), candidates)
				}
				if !slices.IsSortedFunc(order, before) {
					t.Errorf("%s: held out of request order: %+v", label, order)
				}
			}()
		}
		wg.Wait()
	}
}

// A holder whose node dies passes the lease on: its request no longer
// counts once the node is declared dead.
func TestDeadHolderPassesTheLease(t *testing.T) {
	nodes := cluster(t, 3)
	opt := Options{Spread: 300 * time.Millisecond, Skew: time.Millisecond, Poll: 10 * time.Millisecond}
	first, second := New(nodes[1], opt), New(nodes[2], opt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.Acquire(ctx, "es", "a"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- second.Acquire(ctx, "es", "b") }()
	// b waits while a's node lives.
	deadline := time.Now().Add(10 * time.Second)
	for len(second.Requests("es")) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("b's node never saw both requests")
		}
		time.Sleep(5 * time.Millisecond) // polling the requests
	}
	// Long enough for b to have settled and polled several times: were the
	// rule broken, b would hold the lease by now.
	select {
	case err := <-got:
		t.Fatalf("b acquired while a held the lease: %v", err)
	case <-time.After(second.Settle() + 10*opt.Poll):
	}
	nodes[1].Close() // a's node crashes without releasing
	if err := <-got; err != nil {
		t.Fatalf("b did not get the lease after a's node died: %v", err)
	}
}
