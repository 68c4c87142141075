// Command sim measures scuttlebutt cores on the deterministic in-memory
// network of internal/simnet, in virtual time, so that a thousand nodes fit
// in one process and the same seed gives the same figures:
//
//	go run ./bench/sim -n 1000
//
// For each N it reports (a) how long an update takes to reach every node
// (p50, p99, max over -updates updates, in time and in gossip rounds,
// against log3(N)), and the bytes each node sends per second idle and while
// the updates spread, on the wire (payload and IPv4+UDP headers); (b) how long every live node takes to declare a
// crashed node dead (first and last node), and how many times a live node
// was declared dead meanwhile. Then (c) it runs -loss-n nodes
// for -loss-for at each loss rate of -losses and counts false deaths per
// node-hour. Rounds are -interval long (100 ms, DefaultLocalConfig).
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/internal/simnet"
)

func main() {
	sizes := flag.String("n", "1000", "cluster sizes for spread and detection, comma-separated")
	interval := flag.Duration("interval", 100*time.Millisecond, "gossip interval")
	updates := flag.Int("updates", 20, "updates to time per size")
	idle := flag.Duration("idle", 5*time.Second, "virtual time over which idle bytes are measured")
	lossN := flag.Int("loss-n", 50, "cluster size for the false-death runs; 0 skips them")
	lossFor := flag.Duration("loss-for", 10*time.Minute, "virtual time of each false-death run")
	losses := flag.String("losses", "0,0.1,0.3", "loss rates of the false-death runs, comma-separated")
	seed := flag.Uint64("seed", 1, "seed of the network and the nodes")
	flag.Parse()

	var ns []int
	if *sizes != "" {
		for _, s := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 3 {
				fail("-n %q: want sizes of 3 or more, comma-separated", *sizes)
			}
			ns = append(ns, n)
		}
	}
	var rates []float64
	for _, s := range strings.Split(*losses, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || p < 0 || p >= 1 {
			fail("-losses %q: want rates in [0, 1), comma-separated", *losses)
		}
		rates = append(rates, p)
	}
	if *updates < 1 || *interval < time.Millisecond {
		fail("-updates must be at least 1 and -interval at least 1ms")
	}
	fmt.Printf("scuttlebutt simulation: %v rounds, fanout %d, %d-byte datagrams, delay 1-5 ms, seed %d\n\n",
		*interval, scuttlebutt.DefaultLocalConfig().Fanout, scuttlebutt.DefaultLocalConfig().MaxPacketSize, *seed)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(ns) > 0 {
		fmt.Fprintln(tw, "N\tlog3 N\tspread p50\tp99\tmax\trounds p50\tp99\tmax\tB/node/s idle (wire)\tB/node/s updating (wire)\tdead first\tdead last\tfalse deaths\treal time\t")
		for _, n := range ns {
			start := time.Now()
			s := spreadAndDetect(n, *interval, *updates, *idle, *seed)
			fmt.Fprintf(tw, "%d\t%.1f\t%v\t%v\t%v\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%v\t%v\t%d\t%v\t\n",
				n, math.Log(float64(n))/math.Log(3),
				ms(s.p50), ms(s.p99), ms(s.max),
				rounds(s.p50, *interval), rounds(s.p99, *interval), rounds(s.max, *interval),
				s.idleBytes, s.busyBytes, ms(s.firstDead), ms(s.lastDead), s.falseDeaths, time.Since(start).Round(time.Second))
		}
		tw.Flush()
		fmt.Println()
	}
	if *lossN > 0 {
		fmt.Fprintln(tw, "loss\tN\tvirtual time\tnode-hours\tfalse deaths\tper node-hour\treal time\t")
		for _, p := range rates {
			start := time.Now()
			deaths := falseDeaths(*lossN, *interval, p, *lossFor, *seed)
			hours := float64(*lossN) * lossFor.Hours()
			fmt.Fprintf(tw, "%.0f%%\t%d\t%v\t%.1f\t%d\t%.2f\t%v\t\n",
				100*p, *lossN, *lossFor, hours, deaths, float64(deaths)/hours, time.Since(start).Round(time.Second))
		}
		tw.Flush()
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sim: "+format+"\n", args...)
	os.Exit(2)
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func rounds(d, interval time.Duration) float64 { return d.Seconds() / interval.Seconds() }

// start returns n cores with the local config and the given interval that
// all know each other, on a network with 1-5 ms of delay and the given
// loss.
func start(n int, interval time.Duration, loss float64, seed uint64) (*simnet.Network, []*simnet.Node) {
	net := simnet.New(simnet.Options{
		Seed: seed, Loss: loss,
		MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond,
		CheckEvery: 10 * time.Millisecond,
	})
	nodes := make([]*simnet.Node, n)
	for i := range nodes {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = fmt.Sprintf("node-%d", i)
		cfg.GossipInterval = interval // the default detector window, as users run it
		var err error
		if nodes[i], err = net.Add(cfg); err != nil {
			fail("%v", err)
		}
	}
	net.Bootstrap()
	return net, nodes
}

// figures of one cluster size.
type figures struct {
	p50, p99, max       time.Duration // time for an update to reach all
	idleBytes           float64       // bytes sent per node per second, on the wire
	busyBytes           float64
	firstDead, lastDead time.Duration
	falseDeaths         int // live nodes declared dead, over the whole run
}

// udpIPv4Headers is what a datagram takes on the wire besides its payload:
// 20 bytes of IPv4 header and 8 of UDP.
const udpIPv4Headers = 28

// bytesOut returns the bytes the nodes put on the wire: datagrams with
// their IPv4 and UDP headers, as an interface counter would see them.
func bytesOut(nodes []*simnet.Node) uint64 {
	var b uint64
	for _, nd := range nodes {
		b += nd.BytesOut + udpIPv4Headers*nd.PacketsOut
	}
	return b
}

func spreadAndDetect(n int, interval time.Duration, updates int, idle time.Duration, seed uint64) figures {
	net, nodes := start(n, interval, 0, seed)
	rng := rand.New(rand.NewPCG(seed, 0xb))
	var f figures
	victim := nodes[rng.IntN(n)]
	id := victim.Core.ID()
	died := make(map[string]time.Duration)
	var crashed time.Time
	net.OnEvent = func(nd *simnet.Node, e scuttlebutt.Event) {
		if e.Kind != scuttlebutt.EventStatus || e.To != scuttlebutt.StatusDead {
			return
		}
		if e.NodeID != id || crashed.IsZero() {
			f.falseDeaths++
		} else if _, ok := died[nd.Core.ID()]; !ok {
			died[nd.Core.ID()] = net.Now.Sub(crashed)
		}
	}
	net.Run(20 * interval) // the detectors learn the intervals

	b0 := bytesOut(nodes)
	net.Run(idle)
	f.idleBytes = float64(bytesOut(nodes)-b0) / float64(n) / idle.Seconds()

	var took []time.Duration
	b0, t0 := bytesOut(nodes), net.Now
	for i := range updates {
		owner := nodes[rng.IntN(n)]
		if owner == victim {
			owner = nodes[(slices.Index(nodes, owner)+1)%n]
		}
		id := owner.Core.ID()
		net.Do(owner, func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "u", strconv.Itoa(i)) })
		_, want, _ := owner.Core.Version(id)
		reached := func() bool {
			for _, nd := range nodes {
				if _, v, _ := nd.Core.Version(id); v < want {
					return false
				}
			}
			return true
		}
		start := net.Now
		if !net.RunUntil(reached, time.Minute) {
			fail("N=%d: update %d of %s did not reach every node in a minute", n, i, id)
		}
		took = append(took, net.Now.Sub(start))
	}
	f.busyBytes = float64(bytesOut(nodes)-b0) / float64(n) / net.Now.Sub(t0).Seconds()
	slices.Sort(took)
	f.p50, f.p99, f.max = quantile(took, 0.5), quantile(took, 0.99), took[len(took)-1]

	net.Crash(victim)
	crashed = net.Now
	if !net.RunUntil(func() bool { return len(died) == n-1 }, 2*time.Minute) {
		fail("N=%d: %d of %d live nodes declared the crashed node dead in 2 minutes", n, len(died), n-1)
	}
	f.firstDead = time.Duration(math.MaxInt64)
	for _, d := range died {
		f.firstDead, f.lastDead = min(f.firstDead, d), max(f.lastDead, d)
	}
	return f
}

// quantile returns the q quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// falseDeaths runs n live nodes for d at the given loss, with an update a
// minute, and counts how often any node declares any node dead.
func falseDeaths(n int, interval time.Duration, loss float64, d time.Duration, seed uint64) int {
	net, nodes := start(n, interval, loss, seed)
	deaths := 0
	net.OnEvent = func(_ *simnet.Node, e scuttlebutt.Event) {
		if e.Kind == scuttlebutt.EventStatus && e.To == scuttlebutt.StatusDead {
			deaths++
		}
	}
	for i := 0; d > 0; i++ {
		net.Do(nodes[i%n], func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "k", strconv.Itoa(i)) })
		step := min(d, time.Minute)
		net.Run(step)
		d -= step
	}
	return deaths
}
