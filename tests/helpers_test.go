// Package tests holds the system tests: nodes on real UDP and TCP sockets
// over 127.0.0.1, with the whole stack (transport, joins, timers,
// subscribers) in play.
package tests

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gate wraps a real transport: it records the largest datagram written,
// and drops traffic to and from the addresses it is told to block, so a
// test can cut a node off on real sockets.
type gate struct {
	scuttlebutt.Transport
	maxOut  atomic.Int64
	mu      sync.Mutex
	blocked map[string]bool
	packets chan scuttlebutt.Packet
}

func newGate(t testing.TB) *gate {
	tr, err := scuttlebutt.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Transport: tr, blocked: map[string]bool{}, packets: make(chan scuttlebutt.Packet, 256)}
	go func() {
		defer close(g.packets)
		for p := range tr.Packets() {
			if !g.isBlocked(p.From) {
				g.packets <- p
			}
		}
	}()
	return g
}

func (g *gate) isBlocked(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.blocked[addr] || g.blocked["*"]
}

// block cuts traffic with addrs; "*" cuts everything.
func (g *gate) block(addrs ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range addrs {
		g.blocked[a] = true
	}
}

func (g *gate) unblock() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.blocked)
}

func (g *gate) WriteTo(b []byte, addr string) error {
	for {
		old := g.maxOut.Load()
		if int64(len(b)) <= old || g.maxOut.CompareAndSwap(old, int64(len(b))) {
			break
		}
	}
	if g.isBlocked(addr) {
		return nil
	}
	return g.Transport.WriteTo(b, addr)
}

func (g *gate) Packets() <-chan scuttlebutt.Packet { return g.packets }

// member is a node under test with its gate.
type member struct {
	*scuttlebutt.Node
	gate *gate
	cfg  *scuttlebutt.Config
}

// config is the test configuration: 50 ms rounds.
func config(id string) *scuttlebutt.Config {
	cfg := scuttlebutt.DefaultLocalConfig()
	cfg.ID = id
	cfg.GossipInterval = 50 * time.Millisecond
	return cfg
}

// start creates a node on 127.0.0.1 with a gate; tune may change cfg.
func start(t testing.TB, id string, tune func(*scuttlebutt.Config)) *member {
	t.Helper()
	cfg := config(id)
	if tune != nil {
		tune(cfg)
	}
	g := newGate(t)
	cfg.Transport = g
	n, err := scuttlebutt.Create(cfg)
	if err != nil {
		g.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &member{Node: n, gate: g, cfg: cfg}
}

// startCluster starts n nodes, each seeded with the first.
func startCluster(t testing.TB, n int, tune func(*scuttlebutt.Config)) []*member {
	t.Helper()
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = start(t, fmt.Sprintf("node-%02d", i), tune)
		if i > 0 {
			if err := ms[i].Seed([]string{ms[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ms
}

// agreed reports whether every node in ms holds owner's key as want
// ("" for absent).
func agreed(ms []*member, owner, key, want string) bool {
	for _, m := range ms {
		v, _ := m.Lookup(owner, key)
		if v != want {
			return false
		}
	}
	return true
}

// statusAt returns how m sees id.
func statusAt(m *member, id string) scuttlebutt.Status {
	info, ok := m.NodeInfo(id)
	if !ok {
		return scuttlebutt.StatusRemoved
	}
	return info.Status
}

// udpAddr is a check that an address is a real loopback socket address.
func udpAddr(t testing.TB, a string) {
	t.Helper()
	if _, err := net.ResolveUDPAddr("udp", a); err != nil {
		t.Fatalf("address %q: %v", a, err)
	}
}
