// Command cluster measures a cluster of scuttlebutt nodes on loopback
// sockets (UDP and TCP on 127.0.0.1), all in this process:
//
//	go run ./bench/cluster -n 16,64,128
//
// For each N it reports how long an update takes to reach every node (p50,
// p99, max, in time and in gossip rounds, against the push-pull bound
// log3(N)), updates missed, bytes per node per second idle and while updates
// flow, CPU per node; then how long every live node takes to declare a
// crashed node dead (first and last node; after -warm of uptime, so the
// failure detectors judge by a steady state), and how long for a node that
// leaves. With -loss it drops that share of datagrams at random, and
// -falsedeaths D runs the cluster idle for D and counts false deaths.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

func main() {
	sizes := flag.String("n", "16,64,128", "cluster sizes, comma-separated")
	interval := flag.Duration("interval", 100*time.Millisecond, "gossip interval")
	updates := flag.Int("updates", 20, "updates to time per size")
	every := flag.Duration("every", 200*time.Millisecond, "time between updates")
	crashes := flag.Int("crashes", 3, "crashed nodes to time per size")
	warm := flag.Duration("warm", 15*time.Second, "uptime before the first crash, so the detectors' windows hold a steady state")
	loss := flag.Float64("loss", 0, "share of datagrams dropped at random, 0 to 1")
	falseDeaths := flag.Duration("falsedeaths", 0, "if set, run idle this long and count false deaths instead")
	encrypt := flag.Bool("encrypt", false, "encrypt gossip (AES-256-GCM, one key shared by every node)")
	flag.Parse()
	if *loss < 0 || *loss >= 1 {
		fail("-loss %v: want a share in [0, 1)", *loss)
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fail("-n %q: want sizes of 2 or more, comma-separated", *sizes)
		}
		b := &bench{n: n, interval: *interval, loss: *loss, encrypt: *encrypt}
		if err := b.start(); err != nil {
			fail("N=%d: %v", n, err)
		}
		if *falseDeaths > 0 {
			b.falseDeaths(*falseDeaths)
		} else {
			b.spread(*updates, *every)
			if up := time.Since(b.started); up < *warm {
				time.Sleep(*warm - up)
			}
			b.detect(*crashes)
		}
		b.stop()
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
	os.Exit(2)
}

type bench struct {
	n        int
	interval time.Duration
	loss     float64
	encrypt  bool
	nodes    []*scuttlebutt.Node
	trs      []*lossy
	subs     []*watcher
	started  time.Time // when the cluster had formed
}

// lossy drops a share of the datagrams a node sends, and counts the bytes
// of those it puts on the wire.
type lossy struct {
	scuttlebutt.Transport
	loss float64
	mu   sync.Mutex
	rng  *rand.Rand
	wire atomic.Uint64 // bytes sent on the wire: payload and IPv4 and UDP headers
}

// udpIPv4Headers is what a datagram takes on the wire besides its payload:
// 20 bytes of IPv4 header and 8 of UDP.
const udpIPv4Headers = 28

func (l *lossy) WriteTo(b []byte, addr string) error {
	l.mu.Lock()
	drop := l.rng.Float64() < l.loss
	l.mu.Unlock()
	if drop {
		return nil
	}
	l.wire.Add(uint64(len(b) + udpIPv4Headers))
	return l.Transport.WriteTo(b, addr)
}

// watcher records when a node first saw each update and each departure.
type watcher struct {
	mu    sync.Mutex
	seen  map[string]time.Time // key "bench-I" -> first arrival
	gone  map[string]time.Time // node ID -> NotifyLeave
	flaps []time.Time          // alive -> dead transitions
}

func (w *watcher) NotifyUpdate(id, key, value string) {
	if !strings.HasPrefix(key, "bench-") {
		return
	}
	now := time.Now()
	w.mu.Lock()
	if _, ok := w.seen[key]; !ok {
		w.seen[key] = now
	}
	w.mu.Unlock()
}
func (w *watcher) NotifyJoin(string) {}
func (w *watcher) NotifyLeave(id string) {
	now := time.Now()
	w.mu.Lock()
	w.gone[id] = now
	w.mu.Unlock()
}
func (w *watcher) NotifyStatus(id string, from, to scuttlebutt.Status) {
	if from == scuttlebutt.StatusAlive && to == scuttlebutt.StatusDead {
		now := time.Now()
		w.mu.Lock()
		w.flaps = append(w.flaps, now)
		w.mu.Unlock()
	}
}

func (b *bench) start() error {
	for i := range b.n {
		tr, err := scuttlebutt.Listen("127.0.0.1:0")
		if err != nil {
			return err
		}
		l := &lossy{Transport: tr, loss: b.loss, rng: rand.New(rand.NewPCG(uint64(i), 1))}
		w := &watcher{seen: map[string]time.Time{}, gone: map[string]time.Time{}}
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = fmt.Sprintf("node-%03d", i)
		cfg.GossipInterval = b.interval
		cfg.Transport = l
		cfg.StateSubscriber, cfg.NodeSubscriber = w, w
		if b.encrypt {
			if cfg.Keyring, err = scuttlebutt.NewKeyring(benchKey); err != nil {
				return err
			}
		}
		n, err := scuttlebutt.Create(cfg)
		if err != nil {
			return err
		}
		b.nodes, b.trs, b.subs = append(b.nodes, n), append(b.trs, l), append(b.subs, w)
		if i > 0 {
			if err := n.Seed([]string{b.nodes[0].Addr()}); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for !b.allAlive(b.nodes) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster did not form in 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.started = time.Now()
	return nil
}

func (b *bench) allAlive(nodes []*scuttlebutt.Node) bool {
	for _, n := range nodes {
		alive := 0
		for _, i := range n.Nodes() {
			if i.Status == scuttlebutt.StatusAlive {
				alive++
			}
		}
		if alive != len(nodes) {
			return false
		}
	}
	return true
}

func (b *bench) stop() {
	for _, n := range b.nodes {
		n.Close()
	}
}

// benchKey is the cluster key of -encrypt.
var benchKey = []byte("0123456789abcdef0123456789abcdef")

// bytesOut returns the bytes all nodes put on the wire: datagrams with their
// IP and UDP headers, as an interface counter sees them.
func (b *bench) bytesOut() uint64 {
	var sum uint64
	for _, l := range b.trs {
		sum += l.wire.Load()
	}
	return sum
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// spread times updates from random nodes until every node has them.
func (b *bench) spread(updates int, every time.Duration) {
	// Let the joins settle first: for 12 rounds after a node joins, it is
	// a recent change every node carries in its digests.
	time.Sleep(30 * b.interval)
	idle := 3 * time.Second
	b0, c0, t0 := b.bytesOut(), cpuTime(), time.Now()
	time.Sleep(idle)
	idleWall := time.Since(t0)
	idleBytes := float64(b.bytesOut()-b0) / idleWall.Seconds() / float64(b.n)
	idleCPU := float64(cpuTime()-c0) / float64(idleWall) / float64(b.n)

	rng := rand.New(rand.NewPCG(uint64(b.n), 7))
	sent := make(map[string]time.Time)
	owner := make(map[string]int)
	b1, c1, t1 := b.bytesOut(), cpuTime(), time.Now()
	for i := range updates {
		k := fmt.Sprintf("bench-%d", i)
		o := rng.IntN(b.n)
		sent[k], owner[k] = time.Now(), o
		_ = b.nodes[o].UpdateLocal(k, "1")
		time.Sleep(every)
	}
	busyWall := time.Since(t1)
	busyBytes := float64(b.bytesOut()-b1) / busyWall.Seconds() / float64(b.n)
	busyCPU := float64(cpuTime()-c1) / float64(busyWall) / float64(b.n)
	// Wait for stragglers, up to 10 s.
	deadline := time.Now().Add(10 * time.Second)
	var lat []time.Duration
	missed := 0
	for {
		lat, missed = b.latencies(sent, owner)
		if missed == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(lat)
	bound := math.Log(float64(b.n)) / math.Log(3)
	rounds := func(d time.Duration) float64 { return d.Seconds() / b.interval.Seconds() }
	p := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	fmt.Printf("N=%d interval=%v loss=%.0f%% encrypted=%v: %d updates, each to every node (log3 N = %.1f rounds)\n", b.n, b.interval, 100*b.loss, b.encrypt, updates, bound)
	fmt.Printf("  reach all: p50 %v (%.1f rounds)  p99 %v (%.1f rounds)  max %v (%.1f rounds)  missed %d\n",
		p(0.5).Round(time.Millisecond), rounds(p(0.5)), p(0.99).Round(time.Millisecond), rounds(p(0.99)),
		p(1).Round(time.Millisecond), rounds(p(1)), missed)
	fmt.Printf("  bytes/node/s on the wire (IP+UDP headers included): idle %.0f, updating %.0f   CPU/node: idle %.2f%%, updating %.2f%% of a core\n",
		idleBytes, busyBytes, 100*idleCPU, 100*busyCPU)
}

// latencies returns, per update, the time until the last node saw it, and
// how many (update, node) pairs are still missing.
func (b *bench) latencies(sent map[string]time.Time, owner map[string]int) ([]time.Duration, int) {
	var out []time.Duration
	missed := 0
	for k, at := range sent {
		var last time.Time
		complete := true
		for i, w := range b.subs {
			if i == owner[k] {
				continue
			}
			w.mu.Lock()
			t, ok := w.seen[k]
			w.mu.Unlock()
			if !ok {
				complete = false
				missed++
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

// detect crashes nodes one at a time (Close: not a word to the others) and
// times the first and last live node to declare each dead; then times a
// Leave.
func (b *bench) detect(crashes int) {
	fmt.Printf("  crash detection (NotifyLeave at every live node):\n")
	for c := range crashes {
		victim := b.nodes[len(b.nodes)-1]
		id := victim.ID()
		t0 := time.Now()
		victim.Close()
		b.nodes, b.subs = b.nodes[:len(b.nodes)-1], b.subs[:len(b.subs)-1]
		first, last, ok := b.waitGone(id, t0, 30*time.Second)
		fmt.Printf("    crash %d: first %v, last %v%s\n", c+1, first.Round(time.Millisecond), last.Round(time.Millisecond), map[bool]string{false: " (NOT ALL within 30 s)"}[ok])
	}
	leaver := b.nodes[len(b.nodes)-1]
	id := leaver.ID()
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = leaver.Leave(ctx)
	cancel()
	b.nodes, b.subs = b.nodes[:len(b.nodes)-1], b.subs[:len(b.subs)-1]
	first, last, _ := b.waitGone(id, t0, 30*time.Second)
	fmt.Printf("    leave: first %v, last %v\n", first.Round(time.Millisecond), last.Round(time.Millisecond))
}

func (b *bench) waitGone(id string, t0 time.Time, timeout time.Duration) (first, last time.Duration, ok bool) {
	deadline := t0.Add(timeout)
	for {
		first, last, ok = 0, 0, true
		for _, w := range b.subs {
			w.mu.Lock()
			t, seen := w.gone[id]
			w.mu.Unlock()
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

// falseDeaths runs the cluster idle for d and counts alive-to-dead
// transitions: every node is up, so each is a false death.
func (b *bench) falseDeaths(d time.Duration) {
	t0 := time.Now()
	for _, w := range b.subs { // count from the cluster formed
		w.mu.Lock()
		w.flaps = nil
		w.mu.Unlock()
	}
	time.Sleep(d)
	total := 0
	var at []string
	for _, w := range b.subs {
		w.mu.Lock()
		total += len(w.flaps)
		for _, t := range w.flaps {
			at = append(at, t.Sub(t0).Round(time.Second).String())
		}
		w.mu.Unlock()
	}
	if len(at) > 0 {
		fmt.Printf("  false deaths at %s\n", strings.Join(at, " "))
	}
	hours := d.Hours() * float64(b.n)
	fmt.Printf("N=%d interval=%v loss=%.0f%% over %v: %d false deaths (%.2f per node-hour)\n",
		b.n, b.interval, 100*b.loss, d, total, float64(total)/hours)
}
