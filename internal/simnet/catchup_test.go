package simnet

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// holdsUpTo returns the first up node that holds less than version v of
// owner's state (generation g), or "".
func holdsUpTo(nodes []*Node, owner *Node, g, v uint64) string {
	id := owner.Core.ID()
	for _, nd := range nodes {
		if g2, v2, _ := nd.Core.Version(id); nd.Up && (g2 != g || v2 < v) {
			return fmt.Sprintf("%s holds %s at generation %d version %d, not %d %d", nd.Core.ID(), id, g2, v2, g, v)
		}
	}
	return ""
}

// writeBacklog sets keys of the largest value on nd until its state is
// full (MaxNodeBytes, 4 MiB by default), and returns how many.
func writeBacklog(t *testing.T, net *Network, nd *Node) int {
	t.Helper()
	value := strings.Repeat("v", scuttlebutt.MaxValueSize(scuttlebutt.DefaultLocalConfig().MaxPacketSize))
	n := 0
	net.Do(nd, func(c *scuttlebutt.Core) {
		for ; ; n++ {
			err := c.Set(net.Now, fmt.Sprintf("k%05d", n), value)
			var le *scuttlebutt.LimitError
			if errors.As(err, &le) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	return n
}

// A 4 MiB backlog written on one node of 16 reaches every node within
// 10 s (the target; by datagrams alone it moved at about 19 keys a
// second), and keys written on that node after it, right after or once it
// arrived, reach every node within 1 s of its arrival or of their write.
// Small updates before it open no stream: catching up costs nothing when
// no one is behind.
func TestBacklogCatchesUp(t *testing.T) {
	const seed = 18
	net, nodes := mesh(t, Options{Seed: seed}, 16, nil)
	net.Run(2 * time.Second)
	for i := range 20 {
		owner := nodes[i%len(nodes)]
		net.Do(owner, func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "u", fmt.Sprint(i)) })
		if !net.RunUntil(func() bool { return spread(nodes, owner) == "" }, 5*time.Second) {
			t.Fatalf("seed %d: update %d: %s", seed, i, spread(nodes, owner))
		}
	}
	for _, nd := range nodes {
		if nd.StreamsOut != 0 {
			t.Fatalf("seed %d: %s opened %d catch-up streams for small updates", seed, nd.Core.ID(), nd.StreamsOut)
		}
	}

	owner := nodes[5]
	keys := writeBacklog(t, net, owner)
	g, backlog, _ := owner.Core.Version(owner.Core.ID())
	net.Do(owner, func(c *scuttlebutt.Core) { _ = c.Delete(net.Now, "k00000") }) // the news after the backlog
	_, after, _ := owner.Core.Version(owner.Core.ID())
	start := net.Now
	if !net.RunUntil(func() bool { return holdsUpTo(nodes, owner, g, backlog) == "" }, 10*time.Second) {
		t.Fatalf("seed %d: the backlog of %d keys is not everywhere after 10 s: %s", seed, keys, holdsUpTo(nodes, owner, g, backlog))
	}
	arrived := net.Now
	if !net.RunUntil(func() bool { return holdsUpTo(nodes, owner, g, after) == "" }, time.Second) {
		t.Fatalf("seed %d: the key written after the backlog is not everywhere 1 s after it: %s", seed, holdsUpTo(nodes, owner, g, after))
	}
	news := net.Now
	net.Do(owner, func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "later", "1") })
	_, later, _ := owner.Core.Version(owner.Core.ID())
	written := net.Now
	if !net.RunUntil(func() bool { return holdsUpTo(nodes, owner, g, later) == "" }, time.Second) {
		t.Fatalf("seed %d: a key written once the backlog arrived is not everywhere 1 s later: %s", seed, holdsUpTo(nodes, owner, g, later))
	}
	var streams, streamBytes uint64
	for _, nd := range nodes {
		streams += nd.StreamsOut
		streamBytes += nd.StreamBytesOut
	}
	t.Logf("seed %d: %d keys (%d versions) everywhere after %v by %d streams (%.1f MiB); the next key %v after that, a later one after %v",
		seed, keys, backlog, arrived.Sub(start), streams, float64(streamBytes)/(1<<20), news.Sub(arrived), net.Now.Sub(written))
	if net.Oversize != 0 {
		t.Errorf("seed %d: %d datagrams over MaxPacketSize", seed, net.Oversize)
	}
	if s := diverged(nodes); s != "" {
		t.Errorf("seed %d: %s", seed, s)
	}
}

// A peer that cannot take a backlog (its own MaxNodeBytes is lower than
// the owner's state) stays far behind however often it is sent it; the
// senders back off, doubling their wait up to 32 intervals, so it does
// not get a megabyte from every node every second. Over 60 s, each of the
// 15 others pushes to it at most 7 times (at 0, 1, 3, 7, 15, 31 and 63 s
// after its first, plus slack for the round a push waits for an
// exchange); without the backoff, about 60 each.
func TestCatchUpsBackOffFromAPeerThatRefuses(t *testing.T) {
	const seed = 21
	net, nodes := mesh(t, Options{Seed: seed}, 16, func(c *scuttlebutt.Config) {
		if c.ID == nodeID(3) {
			c.MaxNodeBytes = 256 << 10
		}
	})
	net.Run(2 * time.Second)
	owner, small := nodes[5], nodes[3]
	value := strings.Repeat("v", scuttlebutt.MaxValueSize(scuttlebutt.DefaultLocalConfig().MaxPacketSize))
	net.Do(owner, func(c *scuttlebutt.Core) {
		for i := range 1200 { // about 1 MiB
			if err := c.Set(net.Now, fmt.Sprintf("k%05d", i), value); err != nil {
				t.Fatal(err)
			}
		}
	})
	g, v, _ := owner.Core.Version(owner.Core.ID())
	var others []*Node
	for _, nd := range nodes {
		if nd != small {
			others = append(others, nd)
		}
	}
	if !net.RunUntil(func() bool { return holdsUpTo(others, owner, g, v) == "" }, 10*time.Second) {
		t.Fatalf("seed %d: %s", seed, holdsUpTo(others, owner, g, v))
	}
	var before uint64
	for _, nd := range others {
		before += nd.StreamsOut
	}
	net.Run(60 * time.Second)
	var after uint64
	for _, nd := range others {
		after += nd.StreamsOut
	}
	_, held, _ := small.Core.Version(owner.Core.ID())
	t.Logf("seed %d: %s holds %d of %d versions; %d catch-up streams to it in 60 s (%d before)", seed, small.Core.ID(), held, v, after-before, before)
	if held >= v {
		t.Fatalf("seed %d: %s took the whole backlog past its limit", seed, small.Core.ID())
	}
	if n := after - before; n > 7*uint64(len(others)) {
		t.Errorf("seed %d: %d catch-up streams in 60 s to a peer that refuses them, want at most %d", seed, n, 7*len(others))
	}
}
