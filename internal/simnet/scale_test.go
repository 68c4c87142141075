package simnet

import (
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// A thousand nodes on 1400-byte datagrams: idle, each sends at most 200 B
// a second on the wire (a heartbeat every 500 ms); an update reaches all of them within 1 s (a few
// rounds of log3(1000) ≈ 6.3), and no datagram is oversized.
func TestThousandNodes(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("1,000 nodes: not under -short or -race")
	}
	net := New(Options{Seed: 7, MaxDelay: 5 * time.Millisecond, CheckEvery: 20 * time.Millisecond})
	nodes := make([]*Node, 1000)
	for i := range nodes {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = nodeID(i)
		cfg.DetectorWindow = 16
		var err error
		if nodes[i], err = net.Add(cfg); err != nil {
			t.Fatal(err)
		}
	}
	net.Bootstrap()
	net.Run(time.Second)
	if d := diverged(nodes); d != "" {
		t.Fatal(d)
	}
	net.Run(time.Second) // the start's changes are no longer recent
	b0 := wireBytes(nodes)
	net.Run(3 * time.Second)
	idle := float64(wireBytes(nodes)-b0) / 1000 / 3
	t.Logf("idle: %.0f bytes/node/s on the wire", idle)
	if idle > 200 {
		t.Errorf("idle traffic %.0f bytes/node/s, want at most 200", idle)
	}
	for _, u := range []int{500, 17, 999} {
		t0 := net.Now
		net.Do(nodes[u], func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "x", nodeID(u)) })
		if !net.RunUntil(func() bool { return spread(nodes, nodes[u]) == "" }, 10*time.Second) {
			t.Fatalf("update of %s: %s", nodeID(u), spread(nodes, nodes[u]))
		}
		took := net.Now.Sub(t0)
		t.Logf("update of %s reached all 1,000 nodes in %v (%.1f rounds)", nodeID(u), took, took.Seconds()/0.1)
		if took > time.Second {
			t.Errorf("update took %v, want at most 1 s (10 rounds)", took)
		}
	}
	if net.Oversize != 0 {
		t.Fatalf("%d datagrams over MaxPacketSize", net.Oversize)
	}
	for _, nd := range nodes {
		for _, ni := range nd.Core.Nodes(net.Now) {
			if ni.Status != scuttlebutt.StatusAlive {
				t.Fatalf("%s sees %s as %v", nd.Core.ID(), ni.ID, ni.Status)
			}
		}
	}
}
