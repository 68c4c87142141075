// Command memberlist runs hashicorp/memberlist and scuttlebutt side by side
// in one scenario, that of bench/cluster, and prints both with their
// ratios:
//
//	cd bench/memberlist && go run . -n 128
//
// N nodes of each system on loopback (UDP and TCP on 127.0.0.1), all in
// this process, one system after the other (memberlist first): each with
// its DefaultLocalConfig (100 ms rounds; -lan: DefaultLANConfig, 200 ms).
// It measures how long until every node sees N members alive after N-1
// joins to one seed; bytes per node per second on the wire (IPv4 and UDP
// headers included; streams counted too, see count.go) idle and while 20
// updates from random nodes flow, one every 200 ms; how long each update
// takes to reach every node; CPU per node; and how long every live node
// takes to declare a crashed node dead (after -warm of uptime). memberlist
// is used as a key-value store through its delegate's broadcast queue and
// push/pull (ml.go). It lives in its own module so that the library's
// go.mod does not grow.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"time"

	"math/rand/v2"
	"syscall"
)

// options are the scenario, the same for both systems.
type options struct {
	n           int
	lan         bool
	encrypt     bool
	rebroadcast bool
	updates     int
	every       time.Duration
	idle        time.Duration
	crashes     int
	warm        time.Duration
	straggle    time.Duration
	formWait    time.Duration
}

// cluster is one system's N nodes, node i named name(i).
type cluster interface {
	system() string
	join() error                 // every node joins node 0, in order
	formed(live int) bool        // each of the first live nodes sees exactly live alive
	set(i int, key string) error // node i writes key
	watcher(i int) *arrivals
	crash(i int) // stop node i without a word
	wire() (datagrams, streams uint64)
	stop()
}

// benchKey is the cluster key of -encrypt (AES-256 for both systems).
var benchKey = []byte("0123456789abcdef0123456789abcdef")

func main() {
	var o options
	flag.IntVar(&o.n, "n", 128, "nodes of each system")
	flag.BoolVar(&o.lan, "lan", false, "both systems with their LAN presets (200 ms rounds) instead of the local ones (100 ms)")
	flag.BoolVar(&o.encrypt, "encrypt", false, "encrypt gossip (AES-256-GCM, one key shared by every node)")
	flag.BoolVar(&o.rebroadcast, "rebroadcast", true, "memberlist: a node that receives a new update queues it again on its own broadcast queue, as serf does with user events (false: only the writer broadcasts it, then push/pull)")
	flag.IntVar(&o.updates, "updates", 20, "updates to time")
	flag.DurationVar(&o.every, "every", 200*time.Millisecond, "time between updates")
	flag.DurationVar(&o.idle, "idle", 0, "idle window for bytes and CPU; 0: memberlist's push/pull period at N (45 s at 128 with the local preset), so that every node's periodic push/pull falls in it once")
	flag.IntVar(&o.crashes, "crashes", 3, "crashed nodes to time")
	flag.DurationVar(&o.warm, "warm", 15*time.Second, "uptime before the first crash, so the detectors judge by a steady state")
	flag.DurationVar(&o.straggle, "straggle", 300*time.Second, "how long to wait for every update to reach every node")
	flag.DurationVar(&o.formWait, "formwait", 120*time.Second, "how long to wait for the membership to form")
	only := flag.String("only", "", `run only "memberlist" or "scuttlebutt"`)
	flag.Parse()
	if o.n < 2 || o.crashes < 0 || o.crashes > o.n-2 || o.updates < 1 {
		fail("want -n of 2 or more, -crashes from 0 to n-2, -updates of 1 or more")
	}
	if o.idle == 0 {
		o.idle = pushPullPeriod(o)
	}
	var results []result
	for _, sys := range []string{"memberlist", "scuttlebutt"} {
		if *only != "" && *only != sys {
			continue
		}
		var c cluster
		var err error
		if sys == "memberlist" {
			c, err = newML(o)
		} else {
			c, err = newSB(o)
		}
		if err != nil {
			fail("%s: %v", sys, err)
		}
		fmt.Fprintf(os.Stderr, "%s: %d nodes...\n", sys, o.n)
		r := measure(c, o)
		c.stop()
		results = append(results, r)
		runtime.GC()
		time.Sleep(time.Second) // let the stopped nodes' goroutines go
	}
	report(o, results)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "memberlist: "+format+"\n", args...)
	os.Exit(2)
}

// result is one system's figures.
type result struct {
	system           string
	formed           time.Duration
	formedOK         bool
	p50, max         time.Duration // of the time for an update to reach every node
	missed           int           // (update, node) pairs that never arrived
	idleBytes        float64       // per node per second, datagrams and streams
	idleStream       float64       // per node per second, streams only
	busyDatagrams    float64       // per node per second while updates flow
	busyStream       float64       // streams in the same window
	idleCPU, busyCPU float64       // share of a core per node
	crashFirst       []time.Duration
	crashLast        []time.Duration
	crashOK          bool
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pushPullPeriod is how often each memberlist node runs a push/pull (a
// full state exchange over TCP) at N nodes: its preset's PushPullInterval
// scaled as memberlist scales it (pushPullScale: ×(1 + ⌈log2 N − log2 32⌉)
// past 32 nodes).
func pushPullPeriod(o options) time.Duration {
	p := 15 * time.Second // DefaultLocalConfig
	if o.lan {
		p = 30 * time.Second
	}
	if o.n <= 32 {
		return p
	}
	return time.Duration(math.Ceil(math.Log2(float64(o.n))-5)+1) * p
}

func interval(o options) time.Duration {
	if o.lan {
		return 200 * time.Millisecond
	}
	return 100 * time.Millisecond
}

// measure runs the scenario on c.
func measure(c cluster, o options) result {
	r := result{system: c.system(), formedOK: true, crashOK: true}
	t0 := time.Now()
	if err := c.join(); err != nil {
		fail("%s: join: %v", c.system(), err)
	}
	for !c.formed(o.n) {
		if time.Since(t0) > o.formWait {
			r.formedOK = false
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.formed = time.Since(t0)
	formedAt := time.Now()

	// Let the joins settle, as bench/cluster does, then the idle window.
	time.Sleep(30 * interval(o))
	wire := func() (uint64, uint64) {
		d, s := c.wire()
		return d + s, s
	}
	perNode := func(b uint64, wall time.Duration) float64 { return float64(b) / wall.Seconds() / float64(o.n) }
	cpu := func(d, wall time.Duration) float64 { return float64(d) / float64(wall) / float64(o.n) }
	b0, s0 := wire()
	c0, w0 := cpuTime(), time.Now()
	time.Sleep(o.idle)
	wall := time.Since(w0)
	b1, s1 := wire()
	r.idleBytes, r.idleStream, r.idleCPU = perNode(b1-b0, wall), perNode(s1-s0, wall), cpu(cpuTime()-c0, wall)

	// Updates from random nodes.
	rng := rand.New(rand.NewPCG(uint64(o.n), 7))
	sent := map[string]time.Time{}
	owner := map[string]int{}
	c0, w0 = cpuTime(), time.Now()
	for i := range o.updates {
		k := fmt.Sprintf("bench-%d", i)
		n := rng.IntN(o.n)
		sent[k], owner[k] = time.Now(), n
		if err := c.set(n, k); err != nil {
			fail("%s: write: %v", c.system(), err)
		}
		time.Sleep(o.every)
	}
	wall = time.Since(w0)
	b2, s2 := wire()
	r.busyDatagrams, r.busyStream = perNode(b2-b1-(s2-s1), wall), perNode(s2-s1, wall)
	r.busyCPU = cpu(cpuTime()-c0, wall)
	deadline := time.Now().Add(o.straggle)
	var lat []time.Duration
	for {
		lat, r.missed = latencies(c, o.n, sent, owner)
		if r.missed == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		r.p50, r.max = lat[len(lat)/2], lat[len(lat)-1]
	}

	// Crashes, the last live node each time, after the warm-up.
	if up := time.Since(formedAt); up < o.warm {
		time.Sleep(o.warm - up)
	}
	live := o.n
	for range o.crashes {
		victim := live - 1
		live--
		t := time.Now()
		c.crash(victim)
		first, last, ok := waitGone(c, live, name(victim), t, 60*time.Second)
		r.crashFirst, r.crashLast = append(r.crashFirst, first), append(r.crashLast, last)
		r.crashOK = r.crashOK && ok
		fmt.Fprintf(os.Stderr, "%s: crash of %s: first %v, last %v\n", c.system(), name(victim), first.Round(time.Millisecond), last.Round(time.Millisecond))
	}
	return r
}

// latencies returns, per complete update, the time until the last node saw
// it, and how many (update, node) pairs are still missing.
func latencies(c cluster, n int, sent map[string]time.Time, owner map[string]int) ([]time.Duration, int) {
	var out []time.Duration
	missed := 0
	for k, at := range sent {
		var last time.Time
		complete := true
		for i := range n {
			if i == owner[k] {
				continue
			}
			t, ok := c.watcher(i).seenAt(k)
			if !ok {
				complete, missed = false, missed+1
				continue
			}
			if t.After(last) {
				last = t
			}
		}
		if complete && !last.IsZero() {
			out = append(out, last.Sub(at))
		}
	}
	return out, missed
}

// waitGone times the first and the last of the live nodes to declare id
// dead.
func waitGone(c cluster, live int, id string, t0 time.Time, timeout time.Duration) (first, last time.Duration, ok bool) {
	deadline := t0.Add(timeout)
	for {
		first, last, ok = 0, 0, true
		for i := range live {
			t, seen := c.watcher(i).goneAt(id)
			if !seen {
				ok = false
				continue
			}
			d := t.Sub(t0)
			if first == 0 || d < first {
				first = d
			}
			last = max(last, d)
		}
		if ok || time.Now().After(deadline) {
			return first, last, ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}
