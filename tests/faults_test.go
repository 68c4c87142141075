package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The fault-injection suite: eight hosts, each an agent in its own
// network namespace, and real faults made with the kernel's own tools
// (nftables for loss and partitions, signals for crashes and pauses). See
// docs/testing.md for what each scenario asserts and the latest figures.
//
// Every bound below is the worst case allowed on a loaded 2-core machine
// with -race in other packages; the figures logged are what to watch.
// faultHosts is how many hosts each scenario starts: 8, or FAULTS_HOSTS
// (at least 4; the issue asks for partitions at 8 and 12).
var faultHosts = faultsHosts()

func faultsHosts() int {
	if n, err := strconv.Atoi(os.Getenv("FAULTS_HOSTS")); err == nil && n >= 4 {
		return n
	}
	return 8
}

const (
	// detectWithin bounds how long every node takes to declare a silent
	// node dead (LAN preset: 200 ms rounds; a few seconds when quiet).
	detectWithin = 20 * time.Second
	// healWithin bounds how long a cluster takes, once a fault is gone,
	// to have every node alive everywhere and every acknowledged write
	// everywhere (the target: 10 s).
	healWithin = 10 * time.Second
)

// faultScenarios are the scenarios with the agent flags each adds to the
// suite's (defaultAgentFlags); add a flag here to run one scenario with
// it.
var faultScenarios = []struct {
	name  string
	flags []string
	run   func(*testing.T, *labCluster)
	netem bool // needs tc netem; skipped (even under CI) where the kernel lacks it
}{
	{name: "loss", run: lossScenario},
	{name: "partition", run: func(t *testing.T, c *labCluster) { partitionScenario(t, c, partitionLAN) }},
	// The local preset (100 ms rounds, heartbeats every 500 ms) detects
	// sooner still (1.5 to 1.8 s at 8 hosts).
	{name: "partition-local", flags: []string{"-config", "local"}, run: func(t *testing.T, c *labCluster) { partitionScenario(t, c, 4*time.Second) }},
	{name: "delay", run: delayScenario, netem: true},
	{name: "one-way-mute", run: muteScenario},
	{name: "one-way-deaf", run: deafScenario},
	{name: "one-way-cut-to-monitor", run: func(t *testing.T, c *labCluster) { oneWayCutScenario(t, c, true, true) }},
	{name: "one-way-cut-from-monitor", run: func(t *testing.T, c *labCluster) { oneWayCutScenario(t, c, true, false) }},
	{name: "one-way-cut", run: func(t *testing.T, c *labCluster) { oneWayCutScenario(t, c, false, true) }},
	{name: "pause", run: pauseScenario},
	{name: "pause-past-detection", run: longPauseScenario},
	{name: "kill-restart", run: killScenario},
	{name: "kill-restart-at-once", run: quickRestartScenario},
	{name: "rolling-restart", run: rollingScenario},
	// Encrypted gossip: the same promises when every datagram and join
	// stream is sealed (restarts rejoin through encrypted streams).
	{name: "kill-restart-encrypted", run: killScenario, flags: []string{"-encrypt", faultKey}},
	{name: "rolling-restart-encrypted", run: rollingScenario, flags: []string{"-encrypt", faultKey}},
}

// faultKey is the cluster key of the encrypted scenarios (base64 of 32
// bytes).
const faultKey = "c2N1dHRsZWJ1dHQtZmF1bHRzLWNsdXN0ZXIta2V5MzI="

func TestFaults(t *testing.T) {
	needNetns(t)
	for _, sc := range faultScenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.netem && !hasNetem() {
				t.Skip("no tc netem in this kernel: delay and reordering cannot be injected (loss and partitions are, with nftables)")
			}
			c := newLabCluster(t, faultHosts, sc.flags...)
			sc.run(t, c)
		})
	}
}

// 30 % loss on every link (and 50 ms ± 20 ms delay where the kernel has
// netem) for a minute while writes flow: no node is declared dead, and
// every acknowledged write reaches every node.
func lossScenario(t *testing.T, c *labCluster) {
	d := time.Minute
	if faultsLong() {
		d = 10 * time.Minute
	}
	delay := "no netem in this kernel: loss only"
	if hasNetem() {
		delay = "50ms ± 20ms delay"
		for _, h := range c.all() {
			c.lab.netem(h, "delay", "50ms", "20ms")
		}
	}
	w := c.startWriter()
	t0 := time.Now()
	for _, h := range c.all() {
		c.lab.loss(h, 30)
	}
	hold(d)
	w.stop()
	conv := c.awaitConverged(c.all(), 2*healWithin) // still under loss
	dropped := c.droppedBy(c.all())
	c.lab.healAll()
	falseDeaths := c.deaths(t0, c.all(), c.all())
	c.figures("30%% loss for %v (%s): %d packets dropped; converged under loss %v after the writes stopped; false deaths %d",
		d, delay, dropped, conv.Round(time.Millisecond), len(falseDeaths))
	if len(falseDeaths) > 0 {
		t.Errorf("false deaths under loss: %+v", falseDeaths)
	}
	c.awaitConverged(c.all(), healWithin)
}

// partitionLAN bounds how long each side of a partition takes to see the
// other dead with the LAN preset, the 4 s: about 1.5 s of silence
// (a 600 ms heartbeat interval and 5.6 deviations of 150 ms), up to 1 s
// of confirmation through helpers, the verdicts' spread (measured 2.5
// and 2.8 s at 8 hosts).
const partitionLAN = 4 * time.Second

// partitionHealed bounds how long after a partition heals every node is
// alive and converged in every view (measured 36 to 48 ms at 8 hosts):
// the heartbeats to the nodes held dead cross at once.
const partitionHealed = time.Second

// A half/half partition for 30 s with writes on both sides: each side
// sees the other dead within within, neither sees its own side dead, and
// after healing all are alive and converged within healWithin.
func partitionScenario(t *testing.T, c *labCluster, within time.Duration) {
	d := 30 * time.Second
	a, b := hostRange(1, faultHosts/2), hostRange(faultHosts/2+1, faultHosts)
	w := c.startWriter()
	t0 := time.Now()
	for _, h := range a {
		c.lab.deafTo(h, b...)
	}
	for _, h := range b {
		c.lab.deafTo(h, a...)
	}
	c.awaitStatus(a, b, "dead", detectWithin)
	c.awaitStatus(b, a, "dead", detectWithin)
	detA, detB := lastAt(c.deaths(t0, a, b)).Sub(t0), lastAt(c.deaths(t0, b, a)).Sub(t0)
	if detA > within || detB > within {
		t.Errorf("the sides saw each other dead after %v and %v, want at most %v", detA, detB, within)
	}
	hold(d - time.Since(t0))
	w.stop()
	dropped := c.droppedBy(c.all())
	healed := time.Now()
	c.lab.healAll()
	conv := c.awaitConverged(c.all(), healWithin)
	if conv > partitionHealed {
		t.Errorf("all alive and converged %v after the partition healed, want at most %v", conv, partitionHealed)
	}
	falseDeaths := append(c.deaths(t0, a, a), c.deaths(t0, b, b)...)
	c.figures("half/half partition for %v (%d packets dropped): side A saw all of B dead after %v, B all of A after %v; "+
		"after healing all alive and converged in %v; deaths within a side %d",
		d, dropped, detA.Round(time.Millisecond), detB.Round(time.Millisecond), conv.Round(time.Millisecond), len(falseDeaths))
	if len(falseDeaths) > 0 {
		t.Errorf("nodes declared dead by their own side: %+v", falseDeaths)
	}
	if back := c.deaths(healed, c.all(), c.all()); len(back) > 0 {
		t.Errorf("deaths after healing: %+v", back)
	}
}

// One host is cut off one way, mute: it hears everyone, no one hears it
// (its outgoing packets are dropped). The others declare it dead within
// detectWithin; it declares no one dead; after healing all are alive and
// converged.
func muteScenario(t *testing.T, c *labCluster) {
	mute := faultHosts
	others := without(c.all(), mute)
	w := c.startWriter()
	t0 := time.Now()
	c.lab.mute(mute)
	c.awaitStatus(others, []int{mute}, "dead", detectWithin)
	det := lastAt(c.deaths(t0, others, []int{mute})).Sub(t0)
	hold(5 * time.Second) // a while longer, dead, while writes flow
	w.stop()
	dropped := c.lab.dropped(mute)
	c.lab.healAll()
	conv := c.awaitConverged(c.all(), healWithin)
	byMute := c.deaths(t0, []int{mute}, c.all())
	falseDeaths := c.deaths(t0, others, others)
	c.figures("h%d mute (hears, is not heard; %d packets dropped): dead everywhere after %v; it declared %d deaths; "+
		"after healing converged in %v; deaths among the others %d",
		mute, dropped, det.Round(time.Millisecond), len(byMute), conv.Round(time.Millisecond), len(falseDeaths))
	if len(falseDeaths) > 0 {
		t.Errorf("false deaths among the hosts that hear each other: %+v", falseDeaths)
	}
	if len(byMute) > 0 {
		t.Errorf("the mute host, which hears everyone, declared deaths: %+v", byMute)
	}
}

// One host is cut off the other way, deaf: everyone hears it, it hears no
// one. It declares every other dead within detectWithin; the others, who
// still get its gossip, never declare it dead; after healing all are
// alive and converged.
func deafScenario(t *testing.T, c *labCluster) {
	deaf := faultHosts
	others := without(c.all(), deaf)
	w := c.startWriter()
	t0 := time.Now()
	c.lab.deafTo(deaf, others...)
	c.awaitStatus([]int{deaf}, others, "dead", detectWithin)
	det := lastAt(c.deaths(t0, []int{deaf}, others)).Sub(t0)
	hold(5 * time.Second)
	w.stop()
	dropped := c.lab.dropped(deaf)
	c.lab.healAll()
	conv := c.awaitConverged(c.all(), healWithin)
	ofDeaf := c.deaths(t0, others, []int{deaf})
	falseDeaths := c.deaths(t0, others, others)
	c.figures("h%d deaf (is heard, hears no one; %d packets dropped): it saw all others dead after %v; they declared it dead %d times; "+
		"after healing converged in %v; deaths among the others %d",
		deaf, dropped, det.Round(time.Millisecond), len(ofDeaf), conv.Round(time.Millisecond), len(falseDeaths))
	if len(falseDeaths) > 0 {
		t.Errorf("false deaths among the hosts that hear each other: %+v", falseDeaths)
	}
	if len(ofDeaf) > 0 {
		t.Errorf("the deaf host, which everyone hears, was declared dead: %+v", ofDeaf)
	}
}

// Delay and reordering (netem: 50 ms ± 20 ms, 25 % reordered) on every
// host for 20 s while writes flow: no false deaths, nothing lost. Skipped
// where the kernel has no netem.
func delayScenario(t *testing.T, c *labCluster) {
	w := c.startWriter()
	t0 := time.Now()
	for _, h := range c.all() {
		c.lab.netem(h, "delay", "50ms", "20ms", "reorder", "25%", "50%")
	}
	hold(20 * time.Second)
	w.stop()
	conv := c.awaitConverged(c.all(), healWithin)
	falseDeaths := c.deaths(t0, c.all(), c.all())
	c.figures("50 ms ± 20 ms delay, 25%% reordered, for 20 s: converged %v after the writes stopped; false deaths %d",
		conv.Round(time.Millisecond), len(falseDeaths))
	if len(falseDeaths) > 0 {
		t.Errorf("false deaths under delay: %+v", falseDeaths)
	}
}

// A process paused (SIGSTOP) for 5 s, then continued: declared dead or
// not, it comes back alive and converged.
func pauseScenario(t *testing.T, c *labCluster) {
	p := 3
	w := c.startWriter()
	w.pause(p)
	t0 := time.Now()
	c.agent(p).signal(syscall.SIGSTOP)
	hold(5 * time.Second)
	c.agent(p).signal(syscall.SIGCONT)
	w.resume(p)
	back := c.awaitStatus(c.all(), c.all(), "alive", healWithin)
	w.stop()
	conv := c.awaitConverged(c.all(), healWithin)
	died := c.deaths(t0, c.all(), []int{p})
	falseDeaths := c.deaths(t0, c.all(), without(c.all(), p))
	c.figures("h%d paused 5 s: declared dead by %d nodes; alive everywhere %v after SIGCONT, converged %v later; other deaths %d",
		p, len(died), back.Round(time.Millisecond), conv.Round(time.Millisecond), len(falseDeaths))
	if len(falseDeaths) > 0 {
		t.Errorf("deaths of hosts that were not paused: %+v", falseDeaths)
	}
}

// A process paused for longer than detection takes (12 s): the others
// declare it dead; when it continues, its own detector must not declare
// everyone dead for its own silence (the pause guard), and it is alive
// everywhere and converged soon after.
func longPauseScenario(t *testing.T, c *labCluster) {
	p := 3
	others := without(c.all(), p)
	w := c.startWriter()
	w.pause(p)
	t0 := time.Now()
	c.agent(p).signal(syscall.SIGSTOP)
	c.awaitStatus(others, []int{p}, "dead", detectWithin)
	det := lastAt(c.deaths(t0, others, []int{p})).Sub(t0)
	hold(12*time.Second - time.Since(t0))
	c.agent(p).signal(syscall.SIGCONT)
	resumed := time.Now()
	w.resume(p)
	c.awaitStatus(c.all(), c.all(), "alive", healWithin)
	back := time.Since(resumed)
	w.stop()
	conv := c.awaitConverged(c.all(), healWithin)
	byPaused := c.deaths(resumed, []int{p}, others)
	falseDeaths := c.deaths(t0, others, others)
	c.figures("h%d paused %v: dead everywhere after %v; alive everywhere %v after SIGCONT, converged %v later; "+
		"deaths it declared on waking %d; other deaths %d",
		p, resumed.Sub(t0).Round(time.Millisecond), det.Round(time.Millisecond), back.Round(time.Millisecond),
		conv.Round(time.Millisecond), len(byPaused), len(falseDeaths))
	if len(byPaused) > 0 {
		t.Errorf("the paused host declared others dead for its own silence: %+v", byPaused)
	}
	if len(falseDeaths) > 0 {
		t.Errorf("deaths of hosts that were not paused: %+v", falseDeaths)
	}
}

// kill -9 and an immediate restart with the same ID and an empty state,
// before anyone noticed the crash: the new incarnation replaces the old
// one everywhere (its old keys gone), and no one declares it dead.
func quickRestartScenario(t *testing.T, c *labCluster) {
	k := 5
	w := c.startWriter()
	w.pause(k)
	t0 := time.Now()
	c.agent(k).signal(syscall.SIGKILL)
	c.agent(k).wait(10 * time.Second)
	c.hist.restarted(c.agent(k).id)
	c.agent(k).start()
	w.resume(k)
	hold(2 * time.Second) // writes to the new incarnation
	w.stop()
	conv := c.awaitConverged(c.all(), healWithin)
	deaths := c.deaths(t0, c.all(), c.all())
	c.figures("h%d killed and restarted at once: converged %v after the writes stopped; deaths %d",
		k, conv.Round(time.Millisecond), len(deaths))
	if len(deaths) > 0 {
		t.Errorf("a node restarted before its crash was noticed was declared dead: %+v", deaths)
	}
}

// kill -9 of one agent: every other node declares it dead within
// detectWithin; restarted with the same ID and an empty state it is alive
// everywhere again, its old keys gone and its new ones everywhere.
func killScenario(t *testing.T, c *labCluster) {
	k := 4
	others := without(c.all(), k)
	w := c.startWriter()
	w.pause(k)
	t0 := time.Now()
	c.agent(k).signal(syscall.SIGKILL)
	c.agent(k).wait(10 * time.Second)
	c.awaitStatus(others, []int{k}, "dead", detectWithin)
	det := lastAt(c.deaths(t0, others, []int{k})).Sub(t0)
	c.hist.restarted(c.agent(k).id)
	restart := time.Now()
	c.agent(k).start()
	w.resume(k)
	c.awaitStatus(c.all(), c.all(), "alive", healWithin)
	back := time.Since(restart) // the agent's start included
	w.stop()
	conv := c.awaitConverged(c.all(), healWithin)
	falseDeaths := c.deaths(t0, c.all(), others)
	c.figures("h%d killed: dead everywhere after %v; restarted, alive everywhere %v after its start; converged %v later; other deaths %d",
		k, det.Round(time.Millisecond), back.Round(time.Millisecond), conv.Round(time.Millisecond), len(falseDeaths))
	if len(falseDeaths) > 0 {
		t.Errorf("deaths of hosts that were not killed: %+v", falseDeaths)
	}
}

// A rolling restart of every host, one after another, while writes flow:
// each leaves (SIGTERM), comes back with the same ID and an empty state,
// and is alive everywhere before the next goes; no node is ever declared
// dead; at the end all hold every acknowledged write.
func rollingScenario(t *testing.T, c *labCluster) {
	w := c.startWriter()
	t0 := time.Now()
	var worst time.Duration
	for _, h := range c.all() {
		w.pause(h)
		c.agent(h).stop()
		c.hist.restarted(c.agent(h).id)
		start := time.Now()
		c.agent(h).start()
		w.resume(h)
		c.awaitStatus(c.all(), []int{h}, "alive", healWithin)
		worst = max(worst, time.Since(start))
	}
	w.stop()
	conv := c.awaitConverged(c.all(), healWithin)
	deaths := c.deaths(t0, c.all(), c.all())
	c.figures("rolling restart of %d hosts in %v: slowest back alive everywhere %v after its start; converged %v after the last; deaths %d",
		faultHosts, time.Since(t0).Round(time.Millisecond), worst.Round(time.Millisecond), conv.Round(time.Millisecond), len(deaths))
	if len(deaths) > 0 {
		t.Errorf("nodes declared dead during a rolling restart (each left gracefully): %+v", deaths)
	}
}

// oneWayCutScenario cuts a single link one way for 60 s while writes
// flow: with monitor, between h2 and one of its monitors (found through
// the API, GET /v1/monitoring), h2's packets to it lost (toMonitor) or
// its packets to h2; otherwise between two hosts neither of which
// monitors the other. Not one host is declared dead by anyone: the
// monitor that stops hearing its node suspects it, and helpers reach it.
// Afterwards all are converged.
func oneWayCutScenario(t *testing.T, c *labCluster, monitor, toMonitor bool) {
	from, to := 2, 0
	if monitor {
		ms := c.monitoring(from).Monitors
		if len(ms) == 0 {
			t.Fatalf("h%d reports no monitor", from)
		}
		fmt.Sscanf(ms[0], "h%d", &to)
		if !toMonitor {
			from, to = to, from
		}
	} else {
		for a := 1; a <= faultHosts && to == 0; a++ {
			for b := 1; b <= faultHosts; b++ {
				ma, mb := c.monitoring(a), c.monitoring(b)
				if a != b && !slices.Contains(ma.Monitors, fmt.Sprintf("h%d", b)) && !slices.Contains(mb.Monitors, fmt.Sprintf("h%d", a)) {
					from, to = a, b
					break
				}
			}
		}
		if to == 0 {
			t.Skip("every pair of hosts shares a monitoring link")
		}
	}
	d := time.Minute
	w := c.startWriter()
	t0 := time.Now()
	c.lab.deafTo(to, from) // to no longer hears from; from still hears to
	hold(d)
	w.stop()
	dropped := c.droppedBy([]int{to})
	c.lab.healAll()
	conv := c.awaitConverged(c.all(), healWithin)
	deaths := c.deaths(t0, c.all(), c.all())
	what := "between hosts that do not monitor each other"
	if monitor {
		what = fmt.Sprintf("h%d to its monitor h%d", from, to)
		if !toMonitor {
			what = fmt.Sprintf("the monitor h%d to h%d", from, to)
		}
	}
	c.figures("one-way cut of h%d to h%d (%s) for %v, writes flowing (%d packets dropped): deaths %d; converged %v after the cut healed",
		from, to, what, d, dropped, len(deaths), conv.Round(time.Millisecond))
	if len(deaths) > 0 {
		t.Errorf("one-way cut of a single link: %d non-alive observations: %+v", len(deaths), deaths)
	}
}

// monitoringView is an agent's GET /v1/monitoring.
type monitoringView struct {
	Monitors, Watched []string
}

// monitoring returns whom host h sends its heartbeats to and whom it
// judges, as its API says.
func (c *labCluster) monitoring(h int) monitoringView {
	c.t.Helper()
	code, body, err := c.agent(h).request("GET", "/v1/monitoring", "")
	var v monitoringView
	if err != nil || code != 200 || json.Unmarshal(body, &v) != nil {
		c.t.Fatalf("h%d: GET /v1/monitoring: %d %s %v", h, code, body, err)
	}
	return v
}

// lastAt returns the time of the last event of es.
func lastAt(es []statusEvent) time.Time {
	var t time.Time
	for _, e := range es {
		if e.at.After(t) {
			t = e.at
		}
	}
	return t
}
