package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/internal/memnet"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func req(node, id string, ticket, epoch uint64) Request {
	return Request{Label: "es", ServiceID: id, Node: node, At: t0, Ticket: ticket, Epoch: epoch}
}

// The rule: a request holds when every live node acknowledges it at its
// epoch; one that does not hold yet yields when an earlier request has a
// vote while it has one too; the queue is by (ticket, node, service ID);
// values round-trip and those of earlier versions are left out.
func TestVotes(t *testing.T) {
	a, b, c := req("n1", "a", 1, 0), req("n2", "b", 2, 0), req("n0", "c", 1, 0)
	live := []string{"n0", "n1", "n2"}
	votes := func(rs ...Request) map[string]ref {
		m := map[string]ref{}
		for i, r := range rs {
			m[live[i]] = r.ref()
		}
		return m
	}
	for _, tc := range []struct {
		name         string
		acks         map[string]ref
		mine         Request
		holds, yield bool
	}{
		{"every live node votes for it", votes(a, a, a), a, true, false},
		{"one vote missing", votes(a, a), a, false, false},
		{"a vote for an older epoch", votes(a, a, req("n1", "a", 1, 1)), req("n1", "a", 1, 1), false, false},
		{"split, an earlier request has a vote: yield", votes(a, b, b), b, false, true},
		{"split, the earlier one waits for the later to yield", votes(a, b, b), a, false, false},
		{"an earlier vote but none for it: nothing to free", votes(c, a, a), b, false, false},
		{"same ticket: the lower node first", votes(c, a, a), a, false, true},
	} {
		v := view{acks: tc.acks, live: live}
		if got := v.granted(tc.mine); got != tc.holds {
			t.Errorf("%s: granted = %v, want %v", tc.name, got, tc.holds)
		}
		if got := v.shouldYield(tc.mine); got != tc.yield {
			t.Errorf("%s: shouldYield = %v, want %v", tc.name, got, tc.yield)
		}
	}
	other := Request{Label: "db", ServiceID: "x", Node: "n9", Ticket: 1}
	if q := Queue([]Request{b, a, other, c}, "es"); len(q) != 3 || q[0] != c || q[1] != a || q[2] != b {
		t.Errorf("Queue = %+v", q)
	}
	r := req("n 1", "a b", 7, 3)
	if tk, ep, at, ok := decodeRequest(encodeRequest(r)); !ok || tk != 7 || ep != 3 || !at.Equal(t0) {
		t.Errorf("request round trip: %d %d %v %v", tk, ep, at, ok)
	}
	if got, ok := decodeAck(encodeAck(r.ref())); !ok || got != r.ref() {
		t.Errorf("ack round trip: %+v %v", got, ok)
	}
	if _, _, _, ok := decodeRequest("1767225600000000000"); ok {
		t.Error("a request of an earlier version (a bare time) parsed")
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
	return skewedCluster(t, make([]time.Duration, n), true)
}

// skewedCluster is cluster with the nodes' clocks off by skews; without
// convict, the failure detector never declares a node dead. The races of
// candidates need that: the guarantee holds in a connected cluster, and
// with 10 ms rounds under -race on a loaded 2-core machine goroutines
// stall past the 180 ms of silence that convicts a node (two holders were
// seen there, each side of a false death counting without the other).
func skewedCluster(t *testing.T, skews []time.Duration, convict bool) []*scuttlebutt.Node {
	t.Helper()
	n := len(skews)
	net := memnet.New()
	var nodes []*scuttlebutt.Node
	for i := range n {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = fmt.Sprintf("node-%d", i)
		cfg.GossipInterval = 10 * time.Millisecond
		// Ten rounds, as the local preset's heartbeats are five: a
		// change the pushes missed is pulled by the next heartbeat.
		cfg.HeartbeatInterval = 100 * time.Millisecond
		cfg.Transport = net.Listen()
		d := skews[i]
		cfg.Clock = scuttlebutt.OffsetClock{Offset: func() time.Duration { return d }}
		if !convict {
			cfg.PhiThreshold = 1e9
		}
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

// running returns the leases of nodes, each acknowledging (Run) until the
// test ends.
func running(t *testing.T, nodes []*scuttlebutt.Node, opt Options) []*Leases {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var out []*Leases
	for _, nd := range nodes {
		l := New(nd, opt)
		wg.Add(1)
		go func() { defer wg.Done(); l.Run(ctx) }()
		out = append(out, l)
	}
	return out
}

// Ten candidates on five nodes race for a label, fifty times (five labels
// at a time): never two holders at once, and every candidate holds it.
func TestTenCandidatesTakeTurns(t *testing.T) {
	takeTurns(t, skewedCluster(t, make([]time.Duration, 5), false), Options{Poll: 10 * time.Millisecond}, 0, 20*time.Millisecond)
}

// The same with the five nodes' clocks spread over ±10 minutes, the
// candidates arriving 40 ms apart, each on a node whose clock is behind
// the last one's, and holding for 100 ms: the clocks change nothing (a
// late candidate whose clock is behind does not jump the queue while the
// lease is held, and no rule waits for clocks to agree).
func TestLeaseClockSkew(t *testing.T) {
	nodes := skewedCluster(t, []time.Duration{10 * time.Minute, 5 * time.Minute, 0, -5 * time.Minute, -10 * time.Minute}, false)
	takeTurns(t, nodes, Options{Poll: 10 * time.Millisecond}, 40*time.Millisecond, 100*time.Millisecond)
}

// takeTurns races ten candidates on nodes for a label, fifty times (five
// labels at a time), candidate c asking stagger×c after the start and
// holding for hold: the holders are counted at every grant and release;
// never two at once, and every candidate holds the lease once.
func takeTurns(t *testing.T, nodes []*scuttlebutt.Node, opt Options, stagger, hold time.Duration) {
	leases := running(t, nodes, opt)
	const reps, parallel, candidates = 50, 5, 10
	for batch := 0; batch < reps; batch += parallel {
		var wg sync.WaitGroup
		for r := batch; r < batch+parallel; r++ {
			label := fmt.Sprintf("es%d", r)
			var mu sync.Mutex
			holders := 0
			served := map[string]int{}
			for c := range candidates {
				l := leases[c%len(leases)]
				id := fmt.Sprintf("svc-%d", c)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					time.Sleep(time.Duration(c) * stagger) // the candidates' arrivals
					if err := l.Acquire(ctx, label, id); err != nil {
						t.Errorf("%s %s: %v", label, id, err)
						return
					}
					mu.Lock()
					holders++
					if holders != 1 {
						t.Errorf("%s: %d holders at once (%s came in)", label, holders, id)
					}
					served[id]++
					mu.Unlock()
					time.Sleep(hold) // the holder's service starting
					mu.Lock()
					holders--
					mu.Unlock()
					if err := l.Release(label, id); err != nil {
						t.Errorf("%s %s: release: %v", label, id, err)
					}
				}()
			}
			defer func() {
				if len(served) != candidates {
					t.Errorf("%s: %d of %d candidates held the lease", label, len(served), candidates)
				}
				for id, n := range served {
					if n != 1 {
						t.Errorf("%s: %s held it %d times", label, id, n)
					}
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
	opt := Options{Poll: 10 * time.Millisecond}
	leases := running(t, nodes, opt)
	first, second := leases[1], leases[2]
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
	// Long enough for b to have polled many times: were the rule broken,
	// b would hold the lease by now.
	select {
	case err := <-got:
		t.Fatalf("b acquired while a held the lease: %v", err)
	case <-time.After(50 * opt.Poll):
	}
	nodes[1].Close() // a's node crashes without releasing
	if err := <-got; err != nil {
		t.Fatalf("b did not get the lease after a's node died: %v", err)
	}
}
