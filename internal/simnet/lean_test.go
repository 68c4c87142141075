package simnet

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// udpIPv4Headers is what a datagram takes on the wire besides its payload.
const udpIPv4Headers = 28

// wireBytes returns what the nodes put on the wire: payloads and headers.
func wireBytes(nodes []*Node) uint64 {
	var b uint64
	for _, nd := range nodes {
		b += nd.BytesOut + udpIPv4Headers*nd.PacketsOut
	}
	return b
}

// leanFigures measures a cluster the way bench/sim does: bytes per node
// per second on the wire, idle and while updates spread one after
// another; the slowest update's time to reach every node; the time for
// every live node to declare a crashed one dead.
type leanFigures struct {
	idle, busy float64
	spreadMax  time.Duration
	deadLast   time.Duration
	falseDead  int
	streams    uint64 // catch-up streams opened: none, when no one is behind
}

func measureLean(t *testing.T, n, updates int, seed uint64) leanFigures {
	t.Helper()
	net, nodes := mesh(t, Options{Seed: seed}, n, nil)
	log := watch(net)
	var f leanFigures
	net.Run(3 * time.Second)
	b0 := wireBytes(nodes)
	net.Run(5 * time.Second)
	f.idle = float64(wireBytes(nodes)-b0) / float64(n) / 5
	victim := nodes[n/3]
	b0, t0 := wireBytes(nodes), net.Now
	for i := range updates {
		owner := nodes[(i*7+1)%n]
		net.Do(owner, func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "u", fmt.Sprint(i)) })
		start := net.Now
		if !net.RunUntil(func() bool { return spread(nodes, owner) == "" }, 10*time.Second) {
			t.Fatalf("seed %d: update %d: %s", seed, i, spread(nodes, owner))
		}
		f.spreadMax = max(f.spreadMax, net.Now.Sub(start))
	}
	f.busy = float64(wireBytes(nodes)-b0) / float64(n) / net.Now.Sub(t0).Seconds()
	id := victim.Core.ID()
	net.Crash(victim)
	crashed := net.Now
	if !net.RunUntil(func() bool { return len(log.died[id]) == n-1 }, 30*time.Second) {
		t.Fatalf("seed %d: %d of %d declared the crashed node dead", seed, len(log.died[id]), n-1)
	}
	for _, at := range log.died[id] {
		f.deadLast = max(f.deadLast, at.Sub(crashed))
	}
	f.falseDead = log.deaths() - log.changes[id][scuttlebutt.StatusDead]
	for _, nd := range nodes {
		f.streams += nd.StreamsOut
	}
	return f
}

// At 128 nodes with 100 ms rounds: idle at most 200 B per node per
// second on the wire (one heartbeat every 500 ms; memberlist's idle is
// 155-235 B), at most 4.5 KB while 20 updates spread, each update
// everywhere within 0.5 s, a crash known everywhere within 3 s.
func TestLeanFigures128(t *testing.T) {
	f := measureLean(t, 128, 20, 3)
	t.Logf("N=128: idle %.0f B/node/s, updating %.0f B/node/s, update max %v, dead everywhere after %v",
		f.idle, f.busy, f.spreadMax, f.deadLast)
	if f.idle > 200 || f.busy > 4500 {
		t.Errorf("seed 3: %.0f B/node/s idle (want <= 200), %.0f updating (want <= 4500)", f.idle, f.busy)
	}
	if f.spreadMax > 500*time.Millisecond {
		t.Errorf("seed 3: an update took %v to reach every node, want <= 0.5 s", f.spreadMax)
	}
	if f.streams != 0 {
		t.Errorf("seed 3: %d catch-up streams, idle and updating (no one is far behind)", f.streams)
	}
	if f.deadLast > 3*time.Second || f.falseDead != 0 {
		t.Errorf("seed 3: crash known everywhere after %v (want <= 3 s); %d false deaths", f.deadLast, f.falseDead)
	}
}

// Idle bytes grow at most logarithmically with N: the same per node at 16
// as at 128 nodes, give or take a tenth.
func TestIdleBytesDoNotGrowWithN(t *testing.T) {
	var idle []float64
	for _, n := range []int{16, 128} {
		net, nodes := mesh(t, Options{Seed: 5}, n, nil)
		net.Run(3 * time.Second)
		b0 := wireBytes(nodes)
		net.Run(5 * time.Second)
		idle = append(idle, float64(wireBytes(nodes)-b0)/float64(n)/5)
	}
	t.Logf("idle B/node/s: N=16 %.0f, N=128 %.0f", idle[0], idle[1])
	if idle[1] > 1.1*idle[0] {
		t.Errorf("idle bytes per node grew from %.0f at N=16 to %.0f at N=128", idle[0], idle[1])
	}
}

// A monitor whose inbound traffic is entirely lost hears none of the nodes
// it watches. The fault is its own: it hears no one at all, so it takes
// itself to be isolated and publishes no verdict. Everyone else keeps
// every node alive (it still hears the deaf node's pings), while the deaf
// node sees everyone dead in its own view only. Once it hears again, it
// catches up and sees everyone alive.
func TestDeafMonitorKillsNoOne(t *testing.T) {
	const n = 30
	net, nodes := mesh(t, Options{Seed: 71}, n, nil)
	net.Run(3 * time.Second)
	log := watch(net)
	deaf := nodes[11]
	deaf.InLoss = 1
	net.Run(30 * time.Second)
	for subject, by := range log.died {
		for observer := range by {
			if observer != deaf.Core.ID() {
				t.Errorf("seed 71: %s declared %s dead while only %s was deaf", observer, subject, deaf.Core.ID())
			}
		}
	}
	if s := deaf.Core.Stats(); s.Verdicts != 0 || s.Isolations != 1 {
		t.Errorf("the deaf node convicted %d nodes, was isolated %d times; want 0 and 1", s.Verdicts, s.Isolations)
	}
	for _, nd := range nodes {
		if nd != deaf && statusIn(net, deaf, nd.Core.ID()) != scuttlebutt.StatusDead {
			t.Errorf("the deaf node sees %s %v, want dead in its own view", nd.Core.ID(), statusIn(net, deaf, nd.Core.ID()))
		}
	}
	deaf.InLoss = 0
	healed := net.Now
	if !net.RunUntil(func() bool { return notAlive(net, nodes) == "" && behind(nodes) == "" }, 10*time.Second) {
		t.Fatalf("seed 71: 10 s after the deaf node hears again: %s%s", notAlive(net, nodes), behind(nodes))
	}
	t.Logf("all alive in every view %v after the deaf node hears again", net.Now.Sub(healed))
}

// A node paused for longer than a detection time (SIGSTOP, a suspended
// VM) is convicted: it answers no probe, and the helpers confirm. The
// verdict is wrong once it resumes: it refutes it, is alive everywhere
// again, and stays so: a verdict never makes a lasting death of a node
// that is alive.
func TestWrongVerdictIsRefuted(t *testing.T) {
	const n = 20
	net, nodes := mesh(t, Options{Seed: 73}, n, nil)
	net.Run(3 * time.Second)
	x := nodes[4]
	id := x.Core.ID()
	log := watch(net)
	net.Crash(x)
	if !net.RunUntil(func() bool { return allSee(net, nodes, id, scuttlebutt.StatusDead) == "" }, 10*time.Second) {
		t.Fatalf("seed 73: %s paused for 10 s: %s", id, allSee(net, nodes, id, scuttlebutt.StatusDead))
	}
	net.Resume(x)
	if !net.RunUntil(func() bool { return x.Core.Stats().Refutations >= 1 }, 10*time.Second) {
		t.Fatalf("seed 73: %s did not refute its verdict in 10 s", id)
	}
	if !net.RunUntil(func() bool { return allSee(net, nodes, id, scuttlebutt.StatusAlive) == "" }, 5*time.Second) {
		t.Fatalf("seed 73: %s", allSee(net, nodes, id, scuttlebutt.StatusAlive))
	}
	deaths := log.changes[id][scuttlebutt.StatusDead]
	net.Run(10 * time.Second)
	t.Logf("%s declared dead %d times in all views while paused, refuted %d times", id, deaths, x.Core.Stats().Refutations)
	if d := log.deaths() - deaths; d != 0 {
		t.Errorf("%d deaths after the refutation, or of other nodes", d)
	}
	if allSee(net, nodes, id, scuttlebutt.StatusAlive) != "" {
		t.Errorf("after 10 s: %s", allSee(net, nodes, id, scuttlebutt.StatusAlive))
	}
}

// A one-way cut of a single link, for 60 virtual seconds, convicts no
// one, in either direction, between a node and one of its monitors or
// between two nodes with no monitoring between them: the monitor that
// stops hearing its node suspects it, and the helpers' probes reach it.
// Not one non-alive observation of any node anywhere, and the suspicions
// cost no verdict.
func TestOneWayCutKillsNoOne(t *testing.T) {
	const n = 30
	net, nodes := mesh(t, Options{Seed: 75}, n, nil)
	net.Run(3 * time.Second)
	x := nodes[7]
	var monitor *Node
	for _, nd := range nodes {
		if nd != x && slices.Contains(nd.Core.Watched(), x.Core.ID()) {
			monitor = nd
			break
		}
	}
	if monitor == nil {
		t.Fatalf("no node watches %s", x.Core.ID())
	}
	// Two nodes neither of which watches the other.
	a, b := nodes[12], nodes[21]
	if slices.Contains(a.Core.Watched(), b.Core.ID()) || slices.Contains(b.Core.Watched(), a.Core.ID()) {
		t.Fatalf("%s and %s watch each other: pick others", a.Core.ID(), b.Core.ID())
	}
	for _, tc := range []struct {
		name     string
		from, to *Node
	}{
		{"node to its monitor", x, monitor},
		{"monitor to its node", monitor, x},
		{"a to b", a, b},
		{"b to a", b, a},
	} {
		log := watch(net)
		var suspicions uint64
		for _, nd := range nodes {
			suspicions -= nd.Core.Stats().Suspicions
		}
		net.Cut(tc.from, tc.to)
		var bad string
		net.RunUntil(func() bool { bad = notAlive(net, nodes); return bad != "" }, time.Minute)
		net.Heal()
		for _, nd := range nodes {
			suspicions += nd.Core.Stats().Suspicions
		}
		t.Logf("%s cut one way for 60 s: %d deaths, %d suspicions", tc.name, log.deaths(), suspicions)
		if bad != "" || log.deaths() != 0 {
			t.Errorf("seed 75, %s cut one way: %d deaths; %s", tc.name, log.deaths(), bad)
		}
		if tc.from == x && suspicions == 0 {
			t.Errorf("seed 75, %s cut: no suspicion at all; the cut was not on a monitored link", tc.name)
		}
		net.Run(2 * time.Second)
	}
}
