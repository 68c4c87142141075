package tests

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// 32 nodes on real sockets converge: every node holds every node's state,
// and sees every node alive; no datagram is over MaxPacketSize, even with
// values near the largest allowed.
func TestThirtyTwoNodesConverge(t *testing.T) {
	ms := startCluster(t, 32, nil)
	big := strings.Repeat("v", scuttlebutt.MaxValueSize(1400))
	for i, m := range ms {
		udpAddr(t, m.Addr())
		for k := range 3 {
			if err := m.UpdateLocal(fmt.Sprintf("key-%d", k), fmt.Sprintf("%d-%d", i, k)); err != nil {
				t.Fatal(err)
			}
		}
		if i%4 == 0 {
			if err := m.UpdateLocal("big", big); err != nil {
				t.Fatal(err)
			}
		}
	}
	converged := func() string {
		for _, owner := range ms {
			want, _ := owner.State(owner.ID())
			for _, m := range ms {
				got, _ := m.State(owner.ID())
				if !maps.Equal(want, got) {
					return fmt.Sprintf("%s's view of %s (-want +got):\n%s", m.ID(), owner.ID(), cmp.Diff(want, got))
				}
			}
		}
		return ""
	}
	waitFor(t, 20*time.Second, "32 nodes to converge", func() bool { return converged() == "" })
	for _, m := range ms {
		nodes := m.Nodes()
		if len(nodes) != 32 {
			t.Fatalf("%s knows %d nodes", m.ID(), len(nodes))
		}
		for _, n := range nodes {
			if n.Status != scuttlebutt.StatusAlive {
				t.Errorf("%s sees %s as %v", m.ID(), n.ID, n.Status)
			}
		}
		if max := m.gate.maxOut.Load(); max > 1400 {
			t.Errorf("%s sent a datagram of %d bytes", m.ID(), max)
		}
		if s := m.Stats(); s.MaxPacketBytes > 1400 || s.Dropped["oversize_out"] != 0 {
			t.Errorf("%s: largest datagram %d, oversize %d", m.ID(), s.MaxPacketBytes, s.Dropped["oversize_out"])
		}
	}
}

// A node restarted with the same ID comes back with a higher generation;
// its new state replaces the old one everywhere, old keys included.
func TestRestartedNodeStateWins(t *testing.T) {
	ms := startCluster(t, 5, nil)
	old := ms[4]
	if err := old.UpdateLocal("role", "old"); err != nil {
		t.Fatal(err)
	}
	if err := old.UpdateLocal("only-old", "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the old state to spread", func() bool { return agreed(ms[:4], "node-04", "only-old", "x") })
	oldGen := old.Generation()
	old.Close()

	back := start(t, "node-04", func(c *scuttlebutt.Config) {
		c.InitialState = map[string]string{"role": "new"}
	})
	if back.Generation() <= oldGen {
		t.Fatalf("generation %d after a restart, was %d", back.Generation(), oldGen)
	}
	if err := back.Seed([]string{ms[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	all := append(ms[:4:4], back)
	waitFor(t, 10*time.Second, "the new state everywhere", func() bool {
		for _, m := range all {
			s, _ := m.State("node-04")
			info, _ := m.NodeInfo("node-04")
			if !maps.Equal(s, map[string]string{"role": "new"}) || info.Generation != back.Generation() || info.Status != scuttlebutt.StatusAlive {
				return false
			}
		}
		return true
	})
}

// A delete spreads as a tombstone and stays deleted after the tombstone is
// garbage-collected, including at a node that was cut off during the
// delete and comes back after the collection: it is repaired with the
// owner's state, and does not bring the key back.
func TestDeletesStayDeletedAfterGC(t *testing.T) {
	ttl := func(c *scuttlebutt.Config) { c.TombstoneTTL = 500 * time.Millisecond }
	ms := startCluster(t, 6, ttl)
	owner, lagger := ms[1], ms[5]
	for _, k := range []string{"a", "b"} {
		if err := owner.UpdateLocal(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "a and b everywhere", func() bool { return agreed(ms, owner.ID(), "b", "1") })

	lagger.gate.block("*")
	if err := owner.DeleteLocal("a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the delete at the connected nodes", func() bool { return agreed(ms[:5], owner.ID(), "a", "") })
	if v, _ := lagger.Lookup(owner.ID(), "a"); v != "1" {
		t.Fatalf("the cut-off node already has a = %q", v)
	}
	// Past the TTL the tombstone is collected at the owner.
	waitFor(t, 10*time.Second, "the tombstone to be collected", func() bool { return tombstoneGone(owner) })
	lagger.gate.unblock()
	waitFor(t, 10*time.Second, "the lagging node to catch up", func() bool {
		_, ok := lagger.Lookup(owner.ID(), "a")
		v, _ := lagger.Lookup(owner.ID(), "b")
		return !ok && v == "1"
	})
	// And nobody got a back from the lagging node.
	for _, m := range ms {
		if v, ok := m.Lookup(owner.ID(), "a"); ok {
			t.Errorf("%s has a = %q again", m.ID(), v)
		}
	}
}

// tombstoneGone reports whether the owner's state no longer carries the
// tombstone of "a": its full state has no entry for it.
func tombstoneGone(m *member) bool {
	info, _ := m.NodeInfo(m.ID())
	return info.Tombstones == 0
}

// A node of another cluster is refused: its join fails, its datagrams are
// dropped and counted, and nobody learns of it.
func TestOtherClusterRefused(t *testing.T) {
	ms := startCluster(t, 3, nil)
	stranger := start(t, "stranger", func(c *scuttlebutt.Config) { c.ClusterID = "other" })
	if err := stranger.Seed([]string{ms[0].Addr()}); err == nil {
		t.Fatal("a node of another cluster joined")
	}
	waitFor(t, 10*time.Second, "the stranger's datagrams to be counted", func() bool {
		return ms[0].Stats().Dropped["other_cluster"] > 0
	})
	for _, m := range ms {
		if _, ok := m.NodeInfo("stranger"); ok {
			t.Errorf("%s knows the stranger", m.ID())
		}
	}
	if n := len(stranger.Nodes()); n != 1 {
		t.Errorf("the stranger knows %d nodes", n)
	}
}

// Two halves that lost each other long enough to declare each other dead
// converge again once the network heals, without help.
func TestHealedPartitionConverges(t *testing.T) {
	ms := startCluster(t, 8, nil)
	left, right := ms[:4], ms[4:]
	addrs := func(half []*member) []string {
		var out []string
		for _, m := range half {
			out = append(out, m.Addr())
		}
		return out
	}
	waitFor(t, 10*time.Second, "all alive", func() bool {
		for _, m := range ms {
			for _, o := range ms {
				if statusAt(m, o.ID()) != scuttlebutt.StatusAlive {
					return false
				}
			}
		}
		return true
	})
	for _, m := range left {
		m.gate.block(addrs(right)...)
	}
	for _, m := range right {
		m.gate.block(addrs(left)...)
	}
	waitFor(t, 30*time.Second, "each half to declare the other dead", func() bool {
		return statusAt(left[0], right[0].ID()) == scuttlebutt.StatusDead &&
			statusAt(right[0], left[0].ID()) == scuttlebutt.StatusDead
	})
	for i, m := range ms {
		if err := m.UpdateLocal("during", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		m.gate.unblock()
	}
	waitFor(t, 30*time.Second, "the halves to converge", func() bool {
		for i, o := range ms {
			if !agreed(ms, o.ID(), "during", fmt.Sprint(i)) {
				return false
			}
			for _, m := range ms {
				if statusAt(m, o.ID()) != scuttlebutt.StatusAlive {
					return false
				}
			}
		}
		return true
	})
}

// Leave is seen as left by every peer, and Close (a crash) as dead: each
// peer calls NotifyLeave for both, and Leave is seen sooner.
func TestLeaveAndCrashSeen(t *testing.T) {
	subs := make([]*recorder, 6)
	ms := make([]*member, 6)
	for i := range ms {
		subs[i] = newRecorder()
		ms[i] = start(t, fmt.Sprintf("node-%02d", i), func(c *scuttlebutt.Config) { c.NodeSubscriber = subs[i] })
		if i > 0 {
			if err := ms[i].Seed([]string{ms[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Second, "all joins", func() bool {
		for _, s := range subs {
			if s.count("join") < 5 {
				return false
			}
		}
		return true
	})
	survivors, subsLeft := ms[:4], subs[:4]
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ms[4].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "NotifyLeave(node-04) everywhere", func() bool {
		for _, s := range subsLeft {
			if !s.has("leave node-04") {
				return false
			}
		}
		return true
	})
	leaveTook := time.Since(t0)
	t1 := time.Now()
	ms[5].Close()
	waitFor(t, 20*time.Second, "NotifyLeave(node-05) everywhere", func() bool {
		for _, s := range subsLeft {
			if !s.has("leave node-05") {
				return false
			}
		}
		return true
	})
	crashTook := time.Since(t1)
	for _, m := range survivors {
		if st := statusAt(m, "node-04"); st != scuttlebutt.StatusLeft {
			t.Errorf("%s sees the leaver as %v", m.ID(), st)
		}
		if st := statusAt(m, "node-05"); st != scuttlebutt.StatusDead {
			t.Errorf("%s sees the crashed node as %v", m.ID(), st)
		}
	}
	if leaveTook >= crashTook {
		t.Errorf("Leave was seen in %v, a crash in %v: Leave must be faster", leaveTook, crashTook)
	}
	t.Logf("leave seen everywhere in %v, crash in %v", leaveTook, crashTook)
}
