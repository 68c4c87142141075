package docker

import (
	"sync"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/health"
	"github.com/scuttlebutt-go/scuttlebutt/internal/memnet"
)

// skewedNode starts a node on net whose clock is off by d.
func skewedNode(t *testing.T, net *memnet.Network, id string, d time.Duration) *scuttlebutt.Node {
	t.Helper()
	cfg := scuttlebutt.DefaultLocalConfig()
	cfg.ID = id
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.Transport = net.Listen()
	cfg.Clock = scuttlebutt.OffsetClock{Offset: func() time.Duration { return d }}
	n, err := scuttlebutt.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// healthyAt returns the service IDs of es healthy as seen by n.
func healthyAt(n *scuttlebutt.Node) map[string]bool {
	out := map[string]bool{}
	for _, in := range Instances(n, "es", true) {
		out[in.Name] = true
	}
	return out
}

// Three nodes whose clocks are 10 minutes behind, right, and 10 minutes
// ahead each publish a checked service with a TTL of 2 s: every node sees
// all three healthy while their checks pass, and a service whose checker
// falls silent expires on every node within the TTL plus the spread —
// whatever the clocks of its publisher and of the reader.
func TestRecordClockSkew(t *testing.T) {
	const ttl = 2 * time.Second // 20 reports: a stall of a loaded machine does not expire it
	net := memnet.New()
	offsets := []time.Duration{-10 * time.Minute, 0, 10 * time.Minute}
	var nodes []*scuttlebutt.Node
	var pubs []*Publication
	for i, d := range offsets {
		n := skewedNode(t, net, []string{"behind", "right", "ahead"}[i], d)
		nodes = append(nodes, n)
		p, err := NewPublication(n, Registration{Service: "es", ID: "es-" + n.ID(), Host: "10.0.0.1", Port: 9200}, PublishOptions{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, p)
	}
	for _, n := range nodes[1:] {
		if err := n.Seed([]string{nodes[0].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	// The checkers: a passing report every 100 ms until stopped.
	stop := make([]chan struct{}, len(pubs))
	var wg sync.WaitGroup
	for i, p := range pubs {
		stop[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := time.NewTicker(100 * time.Millisecond)
			defer tk.Stop()
			for {
				if _, _, err := p.Report(health.Result{Status: health.Passing, LastCheck: time.Now()}); err != nil {
					t.Error(err)
				}
				select {
				case <-stop[i]:
					return
				case <-tk.C:
				}
			}
		}()
	}
	t.Cleanup(func() {
		for _, s := range stop {
			select {
			case <-s:
			default:
				close(s)
			}
		}
		wg.Wait()
	})
	all := func() bool {
		for _, n := range nodes {
			if len(healthyAt(n)) != 3 {
				return false
			}
		}
		return true
	}
	waitUntil(t, 5*time.Second, "three healthy services on every node", all)
	// Healthy everywhere for two TTLs while the checks pass.
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, n := range nodes {
			if h := healthyAt(n); len(h) != 3 {
				t.Fatalf("%s sees healthy %v while every check passes", n.ID(), h)
			}
		}
	}
	// The checker of the service of the node ahead falls silent, then that
	// of the node behind.
	for _, i := range []int{2, 0} {
		close(stop[i])
		silent := time.Now()
		id := "es-" + nodes[i].ID()
		waitUntil(t, ttl+2*time.Second, id+" expired on every node", func() bool {
			for _, n := range nodes {
				if healthyAt(n)[id] {
					return false
				}
			}
			return true
		})
		t.Logf("%s expired everywhere %v after its checker fell silent (TTL %v)", id, time.Since(silent).Round(10*time.Millisecond), ttl)
		if r := Instances(nodes[1], "es", false); len(r) != 3 {
			t.Errorf("%d instances listed, want 3 (the expired ones too)", len(r))
		}
	}
	if h := healthyAt(nodes[0]); !h["es-right"] || len(h) != 1 {
		t.Errorf("healthy at the end: %v, want es-right only", h)
	}
}

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
