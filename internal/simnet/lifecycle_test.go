package simnet

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Lifecycle of nodes in simulation: detection of crashes, no false deaths
// under loss, partitions that heal, restarts with a new generation, leaves,
// slow nodes that must not flap, removal that a lagging peer cannot undo,
// and the join and leave events. Every run is seeded; a failure names the
// seed.

// mesh starts n nodes with the local config (100 ms rounds) that all know
// each other, as a cluster that has run for a while.
func mesh(t testing.TB, opts Options, n int, tune func(*scuttlebutt.Config)) (*Network, []*Node) {
	t.Helper()
	if opts.MaxDelay == 0 {
		opts.MaxDelay = 5 * time.Millisecond
	}
	if opts.CheckEvery == 0 && n > 200 {
		opts.CheckEvery = 50 * time.Millisecond
	}
	net := New(opts)
	nodes := make([]*Node, n)
	for i := range nodes {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = nodeID(i)
		// A monitor hears the nodes it watches every round: a short
		// window fills in seconds, and saves memory at 1,000 nodes.
		cfg.DetectorWindow = 16
		if tune != nil {
			tune(cfg)
		}
		var err error
		if nodes[i], err = net.Add(cfg); err != nil {
			t.Fatal(err)
		}
	}
	net.Bootstrap()
	return net, nodes
}

// bigOK skips a thousand-node lifecycle test unless SIMNET_LONG=1 (and
// never runs it under -short or the race detector). Each takes minutes of
// CPU (the two-minute partition about five): together they would pass the
// default 10-minute timeout of go test. Run them with
//
//	SIMNET_LONG=1 go test -run '/1000' -timeout 60m ./internal/simnet
func bigOK(t *testing.T, n int) {
	t.Helper()
	if n < 1000 {
		return
	}
	if testing.Short() || raceEnabled || os.Getenv("SIMNET_LONG") != "1" {
		t.Skipf("%d nodes: only with SIMNET_LONG=1, not under -short or -race", n)
	}
}

// quick tells whether to run a smaller version of a long test: under
// -short, and under the race detector, which slows a run tenfold.
func quick() bool { return testing.Short() || raceEnabled }

// statusLog records the status changes every node announces, by subject.
type statusLog struct {
	net *Network
	// changes[subject][to] counts changes to status to, over all observers.
	changes map[string]map[scuttlebutt.Status]int
	// died[subject][observer] is when the observer first declared the
	// subject dead.
	died map[string]map[string]time.Time
	// events[observer] lists the join and leave events of each observer.
	events map[string][]scuttlebutt.Event
}

// watch starts recording the network's status changes.
func watch(net *Network) *statusLog {
	l := &statusLog{
		net:     net,
		changes: make(map[string]map[scuttlebutt.Status]int),
		died:    make(map[string]map[string]time.Time),
		events:  make(map[string][]scuttlebutt.Event),
	}
	net.OnEvent = func(nd *Node, e scuttlebutt.Event) {
		switch e.Kind {
		case scuttlebutt.EventJoin, scuttlebutt.EventLeave:
			l.events[nd.Core.ID()] = append(l.events[nd.Core.ID()], e)
		case scuttlebutt.EventStatus:
			m := l.changes[e.NodeID]
			if m == nil {
				m = make(map[scuttlebutt.Status]int)
				l.changes[e.NodeID] = m
			}
			m[e.To]++
			if e.To == scuttlebutt.StatusDead {
				d := l.died[e.NodeID]
				if d == nil {
					d = make(map[string]time.Time)
					l.died[e.NodeID] = d
				}
				if _, ok := d[nd.Core.ID()]; !ok {
					d[nd.Core.ID()] = net.Now
				}
			}
		}
	}
	return l
}

// deaths returns how many times any node declared any node dead.
func (l *statusLog) deaths() int {
	n := 0
	for _, m := range l.changes {
		n += m[scuttlebutt.StatusDead]
	}
	return n
}

// statusIn returns the status of subject in nd's view; 0 if unknown there.
func statusIn(net *Network, nd *Node, subject string) scuttlebutt.Status {
	ni, ok := nd.Core.NodeInfo(subject, net.Now)
	if !ok {
		return 0
	}
	return ni.Status
}

// allSee returns the first up node (other than the subject) that does not
// see subject with status want, or "".
func allSee(net *Network, nodes []*Node, subject string, want scuttlebutt.Status) string {
	for _, nd := range nodes {
		if !nd.Up || nd.Core.ID() == subject {
			continue
		}
		if got := statusIn(net, nd, subject); got != want {
			return fmt.Sprintf("%s sees %s as %v, want %v", nd.Core.ID(), subject, got, want)
		}
	}
	return ""
}

// notAlive returns the first up node that sees an up node as anything but
// alive, or does not know it, or "".
func notAlive(net *Network, nodes []*Node) string {
	for _, subject := range nodes {
		if !subject.Up {
			continue
		}
		if d := allSee(net, nodes, subject.Core.ID(), scuttlebutt.StatusAlive); d != "" {
			return d
		}
	}
	return ""
}

// A crashed node is declared dead by every live node within a bound, at
// 10, 100 and 1,000 nodes with 100 ms rounds. Its monitors get its
// heartbeat every round; with phi = 0.434 t / mean and threshold 8 they
// convict it after about 18.4 mean intervals (1.84 s), and their verdict
// spreads as an update does (a few hundred milliseconds). Targets: all
// within 3 s at 100 nodes, 5 s at 1,000.
func TestDetectionTime(t *testing.T) {
	for _, tc := range []struct {
		n                 int
		minFirst, maxLast time.Duration
	}{
		{10, time.Second, 3 * time.Second},
		{100, time.Second, 3 * time.Second},
		// Measured with seed 11: first 1.89 s, last 2.19 s.
		{1000, time.Second, 5 * time.Second},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			bigOK(t, tc.n)
			net, nodes := mesh(t, Options{Seed: 11}, tc.n, nil)
			log := watch(net)
			net.Run(3 * time.Second) // the detectors learn the intervals
			victim := nodes[tc.n/2]
			id := victim.Core.ID()
			net.Crash(victim)
			t0 := net.Now
			if !net.RunUntil(func() bool { return len(log.died[id]) == tc.n-1 }, time.Minute) {
				t.Fatalf("seed 11: after a minute %d of %d live nodes declared %s dead", len(log.died[id]), tc.n-1, id)
			}
			first, last := time.Duration(1<<62), time.Duration(0)
			for _, at := range log.died[id] {
				first, last = min(first, at.Sub(t0)), max(last, at.Sub(t0))
			}
			t.Logf("n=%d: %s declared dead first after %v, by all %d after %v", tc.n, id, first, tc.n-1, last)
			if first < tc.minFirst {
				t.Errorf("first declared dead after %v, before %v: the detector is too eager", first, tc.minFirst)
			}
			if last > tc.maxLast {
				t.Errorf("last declared dead after %v, want at most %v", last, tc.maxLast)
			}
			if d := log.deaths() - log.changes[id][scuttlebutt.StatusDead]; d != 0 {
				t.Errorf("%d false deaths of live nodes", d)
			}
			// A late heartbeat of the crashed node must not bring it back.
			net.Run(5 * time.Second)
			if k := log.changes[id][scuttlebutt.StatusAlive]; k != 0 {
				t.Errorf("the crashed %s came back to life %d times", id, k)
			}
		})
	}
}

// Ten virtual minutes of 50 nodes at 10% and 30% message loss (two minutes
// of 20 when quick): no live node is ever declared dead, and the cluster
// stays converged.
func TestNoFalseDeathUnderLoss(t *testing.T) {
	n, minutes := 50, 10
	if quick() {
		n, minutes = 20, 2
	}
	for _, loss := range []float64{0.1, 0.3} {
		t.Run(fmt.Sprintf("loss=%v", loss), func(t *testing.T) {
			noFalseDeaths(t, n, minutes, loss)
		})
	}
	// And a thousand nodes for two virtual minutes (SIMNET_LONG=1).
	for _, loss := range []float64{0.1, 0.3} {
		t.Run(fmt.Sprintf("n=1000/loss=%v", loss), func(t *testing.T) {
			bigOK(t, 1000)
			noFalseDeaths(t, 1000, 2, loss)
		})
	}
}

// noFalseDeaths runs n nodes for some minutes at a loss rate.
func noFalseDeaths(t *testing.T, n, minutes int, loss float64) {
	t.Helper()
	net, nodes := mesh(t, Options{Seed: 21, Loss: loss}, n, nil)
	log := watch(net)
	for i := range minutes {
		// An update a minute keeps deltas flowing too.
		net.Do(nodes[i], func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "k", fmt.Sprint(i)) })
		net.Run(time.Minute)
	}
	if d := log.deaths(); d != 0 {
		t.Errorf("seed 21, loss %v: %d false deaths over %d minutes of %d nodes (%.1f per node-hour)",
			loss, d, minutes, n, float64(d)/(float64(n*minutes)/60))
	}
	if d := notAlive(net, nodes); d != "" {
		t.Error(d)
	}
	if !net.RunUntil(func() bool { return diverged(nodes) == "" }, 10*time.Second) {
		t.Error(diverged(nodes))
	}
}

// A cluster cut in halves for two minutes: each half declares every node
// of the other dead within 4 s; once healed, every node is alive in every view again and all hold
// the same state, updates made during the partition included, within 10 s
// (measured: 5.4 s at 1,000; 5.9 s with three monitors pinged every
// round, 5.0 s with version 3).
func TestPartitionHeals(t *testing.T) {
	small := 50
	if quick() {
		small = 20
	}
	for _, n := range []int{small, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bigOK(t, n)
			net, nodes := mesh(t, Options{Seed: 31}, n, nil)
			net.Run(2 * time.Second)
			a, b := nodes[:n/2], nodes[n/2:]
			net.Partition(a, b)
			net.Do(a[0], func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "side", "a") })
			net.Do(b[0], func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "side", "b") })
			cut := net.Now
			sidesDead := func() bool {
				for _, side := range [][2][]*Node{{a, b}, {b, a}} {
					for _, other := range side[1] {
						if allSee(net, side[0], other.Core.ID(), scuttlebutt.StatusDead) != "" {
							return false
						}
					}
				}
				return true
			}
			if !net.RunUntil(sidesDead, 2*time.Minute) {
				t.Fatalf("seed 31: after 2 minutes of partition the sides do not see each other dead")
			}
			took := net.Now.Sub(cut)
			t.Logf("n=%d: each side sees every node of the other dead %v after the cut", n, took)
			// The target is 4 s, met at 1,000 nodes too (2.55 s with
			// seed 31; 4.96 s before exchanges that show a peer
			// behind on more than 16 nodes pushed it the whole state
			// over a catch-up stream, catchup.go).
			bound := 4 * time.Second
			if took > bound {
				t.Errorf("seed 31: the sides saw each other dead after %v, want at most %v", took, bound)
			}
			net.Run(2*time.Minute - took)
			if d := allSee(net, a, b[0].Core.ID(), scuttlebutt.StatusDead); d != "" {
				t.Fatalf("seed 31, after 2 minutes of partition: %s", d)
			}
			if d := allSee(net, b, a[0].Core.ID(), scuttlebutt.StatusDead); d != "" {
				t.Fatalf("seed 31, after 2 minutes of partition: %s", d)
			}
			net.Heal()
			t0 := net.Now
			healed := func() bool { return notAlive(net, nodes) == "" && behind(nodes) == "" }
			if !net.RunUntil(healed, 10*time.Second) {
				t.Fatalf("seed 31, 10 s after the heal: %s%s", notAlive(net, nodes), behind(nodes))
			}
			t.Logf("n=%d: all alive and converged %v after the heal", n, net.Now.Sub(t0))
			// The target is 1 s, met at 1,000 nodes too (0.75 s with
			// seed 31; 5.4 s before the whole-state pushes to peers
			// held dead, and in a burst of verdicts or revivals).
			if net.Now.Sub(t0) > time.Second {
				t.Errorf("seed 31: all alive and converged %v after the heal, want at most 1 s", net.Now.Sub(t0))
			}
			if d := diverged(nodes); d != "" {
				t.Fatal(d)
			}
			if v, _ := nodes[n-1].Core.Lookup(a[0].Core.ID(), "side"); v != "a" {
				t.Fatalf("%s holds side=%q of %s, want a", nodes[n-1].Core.ID(), v, a[0].Core.ID())
			}
		})
	}
}

// A node restarted with a new generation is alive again everywhere, with
// only its new keys: its old ones are gone. Whether it was declared dead
// before it came back or not, every peer announces it as joining again.
func TestRestartNewGeneration(t *testing.T) {
	for _, wait := range []time.Duration{10 * time.Second, 300 * time.Millisecond} {
		t.Run(fmt.Sprint("down=", wait), func(t *testing.T) {
			const n = 20
			net, nodes := mesh(t, Options{Seed: 41}, n, nil)
			x := nodes[7]
			id := x.Core.ID()
			net.Do(x, func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "old", "1") })
			if !net.RunUntil(func() bool { return spread(nodes, x) == "" }, 5*time.Second) {
				t.Fatal(spread(nodes, x))
			}
			oldGen := x.Core.Generation()
			net.Crash(x)
			net.Run(wait)
			log := watch(net)
			if err := net.Restart(x, map[string]string{"new": "2"}); err != nil {
				t.Fatal(err)
			}
			if x.Core.Generation() <= oldGen {
				t.Fatalf("generation %d after a restart, was %d", x.Core.Generation(), oldGen)
			}
			net.Join(x, nodes[0])
			back := func() bool {
				for _, nd := range nodes {
					if nd == x {
						continue
					}
					ni, _ := nd.Core.NodeInfo(id, net.Now)
					_, hasOld := nd.Core.Lookup(id, "old")
					v, _ := nd.Core.Lookup(id, "new")
					if ni.Status != scuttlebutt.StatusAlive || ni.Generation != x.Core.Generation() || hasOld || v != "2" {
						return false
					}
				}
				return true
			}
			if !net.RunUntil(back, 5*time.Second) {
				t.Fatalf("seed 41: not back everywhere: %s", allSee(net, nodes, id, scuttlebutt.StatusAlive))
			}
			net.Run(5 * time.Second)
			if !back() {
				t.Fatal("the restarted node did not stay alive")
			}
			for _, nd := range nodes {
				if nd == x {
					continue
				}
				joins := 0
				for _, e := range log.events[nd.Core.ID()] {
					if e.NodeID == id && e.Kind == scuttlebutt.EventJoin {
						joins++
					}
				}
				if joins != 1 {
					t.Errorf("%s announced %d joins of the restarted %s, want 1", nd.Core.ID(), joins, id)
				}
			}
			if d := log.deaths(); d != 0 {
				t.Errorf("%d deaths declared after the restart", d)
			}
		})
	}
}

// 100 nodes leave one after another, each waiting until a few peers hold
// its departure (as Node.Leave does) and then stopping. Every survivor
// holds each of them as left, none as dead, and announced one leave each.
func TestLeaveOneAfterAnother(t *testing.T) {
	const survivors, leavers = 10, 100
	net, nodes := mesh(t, Options{Seed: 51}, survivors+leavers, nil)
	net.Run(2 * time.Second)
	log := watch(net)
	for _, nd := range nodes[survivors:] {
		net.Do(nd, func(c *scuttlebutt.Core) { c.Leave(net.Now) })
		if !net.RunUntil(func() bool { return nd.Core.LeaveAcked() >= 3 }, 2*time.Second) {
			t.Fatalf("seed 51: %s: %d acks of its leave after 2 s", nd.Core.ID(), nd.Core.LeaveAcked())
		}
		net.Crash(nd)
		net.Run(100 * time.Millisecond)
	}
	net.Run(10 * time.Second)
	for _, nd := range nodes[survivors:] {
		id := nd.Core.ID()
		if d := allSee(net, nodes, id, scuttlebutt.StatusLeft); d != "" {
			t.Error(d)
		}
		if k := log.changes[id][scuttlebutt.StatusDead]; k != 0 {
			t.Errorf("%s was declared dead %d times", id, k)
		}
	}
	if d := notAlive(net, nodes); d != "" {
		t.Error(d)
	}
	for _, nd := range nodes[:survivors] {
		leaves := make(map[string]int)
		for _, e := range log.events[nd.Core.ID()] {
			if e.Kind == scuttlebutt.EventLeave {
				leaves[e.NodeID]++
			}
		}
		for _, l := range nodes[survivors:] {
			if k := leaves[l.Core.ID()]; k != 1 {
				t.Errorf("%s announced %d leaves of %s, want 1", nd.Core.ID(), k, l.Core.ID())
			}
		}
	}
}

// A slow node must not bounce between dead and alive: one whose datagrams
// are lost at a high rate, and one that stalls for a second every ten.
func TestSlowNodeDoesNotFlap(t *testing.T) {
	const n = 30
	for _, tc := range []struct {
		name  string
		loss  float64
		stall time.Duration
	}{
		{"loss=0.6", 0.6, 0},
		{"stall=1s", 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net, nodes := mesh(t, Options{Seed: 61}, n, nil)
			net.Run(2 * time.Second)
			slow := nodes[3]
			slow.Loss = tc.loss
			log := watch(net)
			cycles := 30 // 5 minutes
			if quick() {
				cycles = 6
			}
			for range cycles {
				if tc.stall > 0 {
					net.Crash(slow)
					net.Run(tc.stall)
					net.Resume(slow)
					net.Run(10*time.Second - tc.stall)
				} else {
					net.Run(10 * time.Second)
				}
			}
			id := slow.Core.ID()
			flips := log.changes[id][scuttlebutt.StatusDead] + log.changes[id][scuttlebutt.StatusAlive]
			t.Logf("%s: %d status changes of the slow node over %v, %d deaths of others", tc.name, flips, time.Duration(cycles)*10*time.Second, log.deaths()-log.changes[id][scuttlebutt.StatusDead])
			if flips > 2*(n-1)/10 {
				t.Errorf("seed 61: the slow node changed status %d times in the views of %d peers", flips, n-1)
			}
			if d := log.deaths() - log.changes[id][scuttlebutt.StatusDead]; d != 0 {
				t.Errorf("%d deaths of other nodes", d)
			}
		})
	}
}

// A removed (ID, generation) cannot be brought back by a peer that lagged
// behind: one stopped before the node crashed, that resumes after the
// others removed it, still holds it, and gossips it until it removes it in
// turn, RemoveAfter later. The node itself, restarted with a
// higher generation, is alive again everywhere.
func TestRemovedNotResurrected(t *testing.T) {
	const n = 10
	const removeAfter = 10 * time.Second
	net, nodes := mesh(t, Options{Seed: 71}, n, func(c *scuttlebutt.Config) { c.RemoveAfter = removeAfter })
	net.Run(2 * time.Second)
	lag, x := nodes[1], nodes[2]
	id := x.Core.ID()
	others := append([]*Node{nodes[0]}, nodes[3:]...)
	net.Crash(lag)
	net.Run(time.Second)
	net.Crash(x)
	gone := func() bool {
		for _, nd := range others {
			if _, ok := nd.Core.NodeInfo(id, net.Now); ok {
				return false
			}
		}
		return true
	}
	if !net.RunUntil(gone, removeAfter+10*time.Second) {
		t.Fatalf("seed 71: %s not removed everywhere", id)
	}
	net.Run(2 * time.Second)
	if statusIn(net, lag, id) != scuttlebutt.StatusAlive {
		t.Fatalf("the lagging node holds %s as %v, want alive", id, statusIn(net, lag, id))
	}
	log := watch(net)
	net.Resume(lag)
	// Long enough for the lagging node to judge, remove and forget x, and
	// for the others' memory of the removal to run out.
	net.Run(3 * removeAfter)
	for _, nd := range nodes {
		if nd.Up && statusIn(net, nd, id) != 0 {
			t.Errorf("%s holds the removed %s as %v", nd.Core.ID(), id, statusIn(net, nd, id))
		}
	}
	for _, nd := range others {
		for _, e := range log.events[nd.Core.ID()] {
			if e.NodeID == id {
				t.Errorf("seed 71: %s announced %v of the removed %s after the lagging node resumed", nd.Core.ID(), e.Kind, id)
				break
			}
		}
	}
	if d := notAlive(net, nodes); d != "" {
		t.Fatalf("the lagging node is not back: %s", d)
	}
	// Truly back: a new generation.
	if err := net.Restart(x, nil); err != nil {
		t.Fatal(err)
	}
	net.Join(x, nodes[0])
	if !net.RunUntil(func() bool { return allSee(net, nodes, id, scuttlebutt.StatusAlive) == "" }, 5*time.Second) {
		t.Fatal(allSee(net, nodes, id, scuttlebutt.StatusAlive))
	}
}

// The join and leave events, as NodeSubscriber sees them: a join when a
// node is first seen alive, back from dead, or back with a new generation;
// a leave when it is declared dead or leaves, once.
func TestJoinLeaveEvents(t *testing.T) {
	const n = 5
	net := New(Options{Seed: 81, MaxDelay: 5 * time.Millisecond})
	log := watch(net)
	nodes := cluster(t, net, n, nil)
	if !net.RunUntil(func() bool { return notAlive(net, nodes) == "" }, 5*time.Second) {
		t.Fatal(notAlive(net, nodes))
	}
	x := nodes[2]
	id := x.Core.ID()
	kinds := func(observer *Node) string {
		var s string
		for _, e := range log.events[observer.Core.ID()] {
			if e.NodeID != id {
				continue
			}
			switch e.Kind {
			case scuttlebutt.EventJoin:
				s += "J"
			case scuttlebutt.EventLeave:
				s += "L"
			}
		}
		return s
	}
	check := func(step, want string) {
		t.Helper()
		for _, nd := range nodes {
			if nd == x {
				continue
			}
			if got := kinds(nd); got != want {
				t.Fatalf("after %s, %s announced %q of %s, want %q (J join, L leave)", step, nd.Core.ID(), got, id, want)
			}
		}
	}
	check("the start", "J")
	net.Run(3 * time.Second) // the detectors learn the intervals
	net.Crash(x)
	if !net.RunUntil(func() bool { return allSee(net, nodes, id, scuttlebutt.StatusDead) == "" }, 10*time.Second) {
		t.Fatal(allSee(net, nodes, id, scuttlebutt.StatusDead))
	}
	check("a crash", "JL")
	net.Resume(x) // same generation, heartbeat advancing: back from dead
	if !net.RunUntil(func() bool { return allSee(net, nodes, id, scuttlebutt.StatusAlive) == "" }, 10*time.Second) {
		t.Fatal(allSee(net, nodes, id, scuttlebutt.StatusAlive))
	}
	check("a resume", "JLJ")
	if err := net.Restart(x, nil); err != nil { // new generation while alive
		t.Fatal(err)
	}
	net.Join(x, nodes[0])
	newGen := func() bool {
		for _, nd := range nodes {
			if ni, _ := nd.Core.NodeInfo(id, net.Now); ni.Generation != x.Core.Generation() {
				return false
			}
		}
		return true
	}
	if !net.RunUntil(newGen, 5*time.Second) {
		t.Fatal("the new generation did not reach every node")
	}
	check("a restart", "JLJJ")
	net.Do(x, func(c *scuttlebutt.Core) { c.Leave(net.Now) })
	if !net.RunUntil(func() bool { return allSee(net, nodes, id, scuttlebutt.StatusLeft) == "" }, 5*time.Second) {
		t.Fatal(allSee(net, nodes, id, scuttlebutt.StatusLeft))
	}
	check("a leave", "JLJJL")
	net.Crash(x) // stopped after leaving: no second leave
	net.Run(10 * time.Second)
	check("the stop after the leave", "JLJJL")
	if d := allSee(net, nodes, id, scuttlebutt.StatusLeft); d != "" {
		t.Fatal(d)
	}
}

// A node dead for longer than its monitor's RemoveAfter has no verdict
// left anywhere: the monitor withdrew it when it removed the node. A peer
// that removes it later (a longer RemoveAfter, or it judged later) still
// holds it dead, and a node that joins through that peer must take it as
// dead too, not alive: otherwise it puts the node on its ring, monitors
// and pings the wrong nodes, and gets healthy ones suspected. The death
// travels with the node's state (a delta's dead mark), not only with the
// verdict.
func TestDeadWithoutVerdictStaysDead(t *testing.T) {
	const n = 10
	net, nodes := mesh(t, Options{Seed: 91}, n, func(c *scuttlebutt.Config) {
		c.RemoveAfter = 10 * time.Second
		if c.ID == nodeID(1) {
			c.RemoveAfter = time.Hour // the peer that still holds it
		}
	})
	net.Run(2 * time.Second)
	log := watch(net)
	// x: a node the holder does not watch, so that the holder holds no
	// verdict of its own on it.
	holder, x := nodes[1], nodes[2]
	for _, nd := range nodes[2:] {
		if !slices.Contains(holder.Core.Watched(), nd.Core.ID()) {
			x = nd
			break
		}
	}
	id := x.Core.ID()
	net.Crash(x)
	if !net.RunUntil(func() bool { return len(log.died[id]) == n-1 }, 10*time.Second) {
		t.Fatalf("seed 91: %d of %d declared %s dead", len(log.died[id]), n-1, id)
	}
	gone := func() bool {
		for _, nd := range nodes {
			if nd != holder && nd.Up && statusIn(net, nd, id) != 0 {
				return false
			}
		}
		return true
	}
	if !net.RunUntil(gone, 30*time.Second) {
		t.Fatalf("seed 91: %s not removed", id)
	}
	// The monitors withdraw their verdicts at their next collection (each
	// second), and the withdrawals spread.
	net.Run(5 * time.Second)
	if got := statusIn(net, holder, id); got != scuttlebutt.StatusDead {
		t.Fatalf("the holder sees %s as %v, want dead", id, got)
	}
	cfg := scuttlebutt.DefaultLocalConfig()
	cfg.ID = "joiner"
	cfg.DetectorWindow = 16
	j, err := net.Add(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !net.Join(j, holder) {
		t.Fatal("join failed")
	}
	if got := statusIn(net, j, id); got != scuttlebutt.StatusDead {
		t.Fatalf("the joiner sees %s, dead with no verdict anywhere, as %v; want dead", id, got)
	}
	deaths := log.deaths()
	net.Run(10 * time.Second)
	if d := log.deaths() - deaths; d != 0 {
		t.Errorf("seed 91: %d deaths after the joiner came", d)
	}
	all := append(slices.Clone(nodes), j)
	if d := notAlive(net, all); d != "" {
		t.Error(d)
	}
}
