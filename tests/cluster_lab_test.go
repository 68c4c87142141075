package tests

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// labCluster is n agents, one per host of a lab, with the writes made to
// them (hist) and the status changes they logged (ev).
type labCluster struct {
	t      *testing.T
	lab    *lab
	agents []*agent // agents[i-1] is host i
	ev     *events
	hist   *history
}

// defaultAgentFlags are the flags every agent of the suite gets, before a
// scenario's own: hosts on a LAN. FAULTS_AGENT_FLAGS replaces them (for
// instance "-config local", or flags a later version adds).
func defaultAgentFlags() []string {
	if f, ok := os.LookupEnv("FAULTS_AGENT_FLAGS"); ok {
		return strings.Fields(f)
	}
	return []string{"-config", "lan"}
}

// faultsLong reports whether FAULTS_LONG=1 asks for the long runs.
func faultsLong() bool { return os.Getenv("FAULTS_LONG") == "1" }

// newLabCluster starts n hosts, each with an agent joining through hosts
// 1 and 2 with the suite's flags plus flags, and waits until every agent
// sees every other alive.
func newLabCluster(t *testing.T, n int, flags ...string) *labCluster {
	t.Helper()
	l := newLab(t, n)
	c := &labCluster{t: t, lab: l, ev: &events{}, hist: newHistory()}
	args := append(append(defaultAgentFlags(), "-join", hostAddr(1)+":8119,"+hostAddr(2)+":8119"), flags...)
	agentBinary(t)
	t0 := time.Now()
	for i := 1; i <= n; i++ {
		c.agents = append(c.agents, l.startAgent(i, c.ev, args...))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("history of writes:\n%s", c.hist)
		}
	})
	c.awaitStatus(c.all(), c.all(), "alive", 30*time.Second)
	formed := time.Since(t0)
	// Warm up: every node's monitor (the node its heartbeats go to) has
	// heard a few of its heartbeats, so failure detectors judge by
	// measured intervals, not by the prior they give a node heard once (a
	// node that crashes then takes longer to be declared dead; see
	// docs/testing.md).
	warm := uint64(warmHeartbeats)
	if faultsLong() {
		warm = fullWindowHeartbeats
	}
	monitors := 1 // a node's heartbeats go to one live node
	waitFor(t, time.Duration(warm)*time.Second, "every node's monitor to hear its heartbeat a few times", func() bool {
		heard := map[string]int{}
		for _, a := range c.agents {
			for id, hb := range a.heartbeats() {
				if hb >= warm {
					heard[id]++
				}
			}
		}
		for _, b := range c.agents {
			if heard[b.id] < monitors {
				return false
			}
		}
		return true
	})
	t.Logf("%d hosts formed a cluster in %v (from the first agent's start to all alive everywhere); warm after %v",
		n, formed.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	return c
}

// warmHeartbeats is how many heartbeats every node's monitors must have
// heard from it before a scenario's faults begin. Until a peer's
// detector window is full (100 samples), its mean interval still weighs
// the prior's pseudo-samples (package failure), so detection is slower
// than in a long-running cluster: with FAULTS_LONG=1 the warm-up lasts
// until the windows are full (fullWindowHeartbeats).
const (
	warmHeartbeats       = 15
	fullWindowHeartbeats = 110
)

// all returns 1..n.
func (c *labCluster) all() []int { return hostRange(1, len(c.agents)) }

// hostRange returns from..to.
func hostRange(from, to int) []int {
	var hs []int
	for i := from; i <= to; i++ {
		hs = append(hs, i)
	}
	return hs
}

// without returns hs without drop.
func without(hs []int, drop ...int) []int {
	var out []int
	for _, h := range hs {
		keep := true
		for _, d := range drop {
			keep = keep && h != d
		}
		if keep {
			out = append(out, h)
		}
	}
	return out
}

func (c *labCluster) agent(i int) *agent { return c.agents[i-1] }

func ids(hs []int) []string {
	out := make([]string, len(hs))
	for k, h := range hs {
		out[k] = fmt.Sprintf("h%d", h)
	}
	return out
}

// awaitStatus waits until every viewer sees every node of of (but itself)
// with status, and returns how long that took.
func (c *labCluster) awaitStatus(viewers, of []int, status string, within time.Duration) time.Duration {
	c.t.Helper()
	t0 := time.Now()
	for {
		missing := ""
		for _, v := range viewers {
			st := c.agent(v).statuses()
			for _, o := range of {
				if s := st[fmt.Sprintf("h%d", o)]; o != v && s != status && missing == "" {
					missing = fmt.Sprintf("h%d sees h%d as %q", v, o, s)
				}
			}
		}
		if missing == "" {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			_, nodes, _ := c.agent(viewers[0]).request("GET", "/v1/nodes", "")
			c.t.Fatalf("after %v, %v do not all see %v %s: %s; h%d's /v1/nodes:\n%s",
				within, ids(viewers), ids(of), status, missing, viewers[0], nodes)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// awaitConverged waits until the history checks on the live hosts: all
// see each other alive and hold every live node's latest acknowledged
// writes. It returns how long that took; on timeout it fails with the
// problems and the history.
func (c *labCluster) awaitConverged(live []int, within time.Duration) time.Duration {
	c.t.Helper()
	t0 := time.Now()
	var problems []string
	for {
		problems = c.check(live)
		if len(problems) == 0 {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	if len(problems) > 20 {
		problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
	}
	c.t.Fatalf("not converged after %v:\n%s", within, strings.Join(problems, "\n"))
	return 0
}

// check runs the history checker on the live hosts' current views.
func (c *labCluster) check(live []int) []string {
	views := map[string]view{}
	for _, h := range live {
		v, err := c.agent(h).view(ids(live))
		if err != nil {
			return []string{err.Error()}
		}
		views[fmt.Sprintf("h%d", h)] = v
	}
	return c.hist.check(ids(live), views, histPrefix)
}

// deaths returns the "node died" events logged since t0 by a viewer in
// viewers about a node in of.
func (c *labCluster) deaths(t0 time.Time, viewers, of []int) []statusEvent {
	in := func(id string, hs []int) bool {
		for _, h := range hs {
			if id == fmt.Sprintf("h%d", h) {
				return true
			}
		}
		return false
	}
	var out []statusEvent
	for _, e := range c.ev.since(t0, "node died") {
		if in(e.viewer, viewers) && in(e.node, of) {
			out = append(out, e)
		}
	}
	return out
}

// droppedBy returns the packets the fault rules of hosts hs dropped; it
// fails the test if some host dropped none (its fault was not real).
func (c *labCluster) droppedBy(hs []int) int {
	c.t.Helper()
	n := 0
	for _, h := range hs {
		d := c.lab.dropped(h)
		if d == 0 {
			c.t.Fatalf("host %d's fault rules dropped no packet", h)
		}
		n += d
	}
	return n
}

// hold keeps a fault in place for d: the fault's duration, not a wait
// for a condition.
func hold(d time.Duration) { time.Sleep(d) }

// histPrefix is the prefix of the keys the writer writes.
const histPrefix = "h/"

// writer writes, one operation at a time, to the hosts not on hold: puts
// of keys h/0..h/3 with values naming the host and a sequence number, and
// every fifth operation a delete. Every operation goes into the history.
type writer struct {
	c       *labCluster
	mu      sync.Mutex // held during each operation
	onHold  map[int]bool
	stopped chan struct{}
	done    chan struct{}
}

func (c *labCluster) startWriter() *writer {
	w := &writer{c: c, onHold: map[int]bool{}, stopped: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	c.t.Cleanup(w.stop)
	return w
}

func (w *writer) loop() {
	defer close(w.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seq := 0
	for {
		select {
		case <-w.stopped:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		h := 1 + seq%len(w.c.agents)
		if !w.onHold[h] {
			a := w.c.agent(h)
			key := fmt.Sprintf("%s%d", histPrefix, (seq/len(w.c.agents))%4)
			if seq%5 == 4 {
				a.del(w.c.hist, key)
			} else {
				a.put(w.c.hist, key, fmt.Sprintf("%s-%d", a.id, seq))
			}
		}
		w.mu.Unlock()
		seq++
	}
}

// pause stops writes to host h; when it returns no write to h is in flight.
func (w *writer) pause(h int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onHold[h] = true
}

// resume lets writes to host h flow again.
func (w *writer) resume(h int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.onHold, h)
}

// stop stops the writer and waits for its last operation.
func (w *writer) stop() {
	select {
	case <-w.stopped:
	default:
		close(w.stopped)
	}
	<-w.done
}

// figures logs a scenario's figures with the number of writes.
func (c *labCluster) figures(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("%s; writes: %d acknowledged, %d unknown, %d refused", fmt.Sprintf(format, args...),
		c.hist.count(acked), c.hist.count(unknown), c.hist.count(failed))
}
