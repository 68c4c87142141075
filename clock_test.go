package scuttlebutt_test

import (
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/internal/memnet"
)

// offset returns a clock d ahead of the host's (behind when negative).
func offset(d time.Duration) scuttlebutt.Clock {
	return scuttlebutt.OffsetClock{Offset: func() time.Duration { return d }}
}

// Node.Now and the default generation follow Config.Clock, the one source
// of wall time; durations do not: a node whose clock is an hour behind
// gossips and detects as any other.
func TestNodeClockSkewStamps(t *testing.T) {
	net := memnet.New()
	before := time.Now()
	a := memNode(t, net, "a", func(c *scuttlebutt.Config) { c.Clock = offset(-time.Hour) })
	b := memNode(t, net, "b", nil)
	if got := a.Now(); got.Sub(before) > -59*time.Minute || got.Sub(before) < -61*time.Minute {
		t.Errorf("a.Now() = %v, want about an hour before %v", got, before)
	}
	if gen := time.Unix(0, int64(a.Generation())); gen.Sub(before) > -59*time.Minute || gen.Sub(before) < -61*time.Minute {
		t.Errorf("a's generation is the time %v, want about an hour before %v (its clock)", gen, before)
	}
	if gen := time.Unix(0, int64(b.Generation())); gen.Sub(before) < 0 || gen.Sub(before) > time.Minute {
		t.Errorf("b's generation is the time %v, want about %v (the host's clock)", gen, before)
	}
	if err := b.Seed([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateLocal("k", "v"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a's key at b", func() bool { v, _ := b.Lookup("a", "k"); return v == "v" })
}

// A node restarted with its clock an hour behind has a lower default
// generation than its previous life, which its peers still hold (dead): it
// learns that generation from the join's full state, takes the next one
// above, and is alive everywhere with its new keys, its old ones gone,
// within the usual join time.
func TestNodeClockSkewRestartGeneration(t *testing.T) {
	net := memnet.New()
	a := memNode(t, net, "a", nil)
	b := memNode(t, net, "b", nil)
	c := memNode(t, net, "c", nil)
	for _, n := range []*scuttlebutt.Node{b, c} {
		if err := n.Seed([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.UpdateLocal("old", "1"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*scuttlebutt.Node{a, b} {
		waitFor(t, 5*time.Second, "c's old key at "+n.ID(), func() bool { _, ok := n.Lookup("c", "old"); return ok })
	}
	oldGen := c.Generation()
	c.Close()
	for _, n := range []*scuttlebutt.Node{a, b} {
		waitFor(t, 10*time.Second, "c dead at "+n.ID(), func() bool {
			ni, ok := n.NodeInfo("c")
			return ok && ni.Status == scuttlebutt.StatusDead
		})
	}

	c2 := memNode(t, net, "c", func(cfg *scuttlebutt.Config) {
		cfg.Clock = offset(-time.Hour)
		cfg.InitialState = map[string]string{"new": "2"}
	})
	if c2.Generation() >= oldGen {
		t.Fatalf("restarted with generation %d, not below the old %d: the test shows nothing", c2.Generation(), oldGen)
	}
	joined := time.Now()
	if err := c2.Seed([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	// The usual join time: a few rounds of 20 ms; 2 s is generous.
	for _, n := range []*scuttlebutt.Node{a, b} {
		waitFor(t, 2*time.Second, "the restarted c alive with its new key and without its old one at "+n.ID(), func() bool {
			ni, ok := n.NodeInfo("c")
			_, old := n.Lookup("c", "old")
			v, _ := n.Lookup("c", "new")
			return ok && ni.Status == scuttlebutt.StatusAlive && v == "2" && !old
		})
	}
	if g := c2.Generation(); g <= oldGen {
		t.Errorf("generation %d after joining, want above %d", g, oldGen)
	}
	t.Logf("back everywhere %v after seeding", time.Since(joined).Round(time.Millisecond))
}

// The same after the old life was removed: the cluster remembers it (its
// generation) for twice RemoveAfter, and the join's full state carries that
// memory, so the node still takes a generation above it at once.
func TestNodeClockSkewRestartAfterRemoval(t *testing.T) {
	net := memnet.New()
	short := func(c *scuttlebutt.Config) { c.RemoveAfter = 2 * time.Second } // remembered for 4 s after removal
	a := memNode(t, net, "a", short)
	b := memNode(t, net, "b", short)
	c := memNode(t, net, "c", short)
	for _, n := range []*scuttlebutt.Node{b, c} {
		if err := n.Seed([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*scuttlebutt.Node{a, b} {
		waitFor(t, 5*time.Second, "c alive at "+n.ID(), func() bool {
			ni, ok := n.NodeInfo("c")
			return ok && ni.Status == scuttlebutt.StatusAlive
		})
	}
	oldGen := c.Generation()
	c.Close()
	for _, n := range []*scuttlebutt.Node{a, b} {
		waitFor(t, 10*time.Second, "c removed at "+n.ID(), func() bool { _, ok := n.NodeInfo("c"); return !ok })
	}
	c2 := memNode(t, net, "c", func(cfg *scuttlebutt.Config) {
		short(cfg)
		cfg.Clock = offset(-time.Hour)
		cfg.InitialState = map[string]string{"new": "2"}
	})
	if err := c2.Seed([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*scuttlebutt.Node{a, b} {
		waitFor(t, 1500*time.Millisecond, "the restarted c alive with its new key at "+n.ID(), func() bool {
			ni, ok := n.NodeInfo("c")
			v, _ := n.Lookup("c", "new")
			return ok && ni.Status == scuttlebutt.StatusAlive && v == "2"
		})
	}
	if g := c2.Generation(); g <= oldGen {
		t.Errorf("generation %d after joining, want above %d", g, oldGen)
	}
}
