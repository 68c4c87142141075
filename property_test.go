package scuttlebutt

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The convergence property: whatever the operations (sets, deletes,
// restarts), message loss, reordering and partitions, once the network
// heals every node holds the same state of every node as that node holds
// of itself. The network here steps Cores directly (package simnet imports
// this one); every run is seeded, and a failure prints the seed and the
// operations.

// propNode is a node of the property network.
type propNode struct {
	id   string
	addr string
	core *Core
	gen  uint64
}

// inFlight is a datagram on its way.
type inFlight struct {
	due      int // round of delivery
	from, to string
	data     []byte
}

type propNet struct {
	t        *testing.T
	rng      *rand.Rand
	nodes    []*propNode
	byAddr   map[string]*propNode
	flight   []inFlight
	loss     float64
	cut      map[string]bool // partitioned addresses: no datagram crosses
	round    int
	now      time.Time
	ops      []string
	tune     func(*Config)
	keySpace int
}

func (n *propNet) logf(format string, args ...any) {
	n.ops = append(n.ops, fmt.Sprintf("r%d ", n.round)+fmt.Sprintf(format, args...))
}

// start (re)starts a node with a new generation and initial state.
func (n *propNet) start(nd *propNode, initial map[string]string) {
	nd.gen++
	cfg := DefaultLocalConfig()
	cfg.ID = nd.id
	cfg.Generation = nd.gen
	cfg.RandSeed = int64(n.rng.Uint64() >> 1)
	cfg.DetectorWindow = 16
	cfg.InitialState = initial
	if n.tune != nil {
		n.tune(cfg)
	}
	c, err := NewCore(cfg, nd.addr, n.now)
	if err != nil {
		n.t.Fatal(err)
	}
	var seeds []string
	for _, o := range n.nodes {
		if o != nd {
			seeds = append(seeds, o.addr)
		}
	}
	c.AddSeeds(seeds)
	nd.core = c
}

// flush queues what a node produced.
func (n *propNet) flush(nd *propNode) {
	for _, m := range nd.core.Ready().Messages {
		if len(m.Data) > nd.core.cfg.MaxPacketSize {
			n.t.Fatalf("%s sent %d bytes", nd.id, len(m.Data))
		}
		n.flight = append(n.flight, inFlight{due: n.round + n.rng.IntN(3), from: nd.addr, to: m.To, data: m.Data})
	}
}

// deliver hands the due datagrams over in random order, including those
// their delivery produces.
func (n *propNet) deliver() {
	for {
		var due []int
		for i, f := range n.flight {
			if f.due <= n.round {
				due = append(due, i)
			}
		}
		if len(due) == 0 {
			return
		}
		i := due[n.rng.IntN(len(due))]
		f := n.flight[i]
		n.flight = slices.Delete(n.flight, i, i+1)
		to := n.byAddr[f.to]
		if to == nil || n.cut[f.from] != n.cut[f.to] || n.rng.Float64() < n.loss {
			continue
		}
		if err := to.core.Step(n.now, f.from, f.data); err != nil {
			n.t.Fatalf("%s refused a datagram of %s: %v", to.id, f.from, err)
		}
		n.flush(to)
	}
}

// randomOp runs one random local operation.
func (n *propNet) randomOp() {
	nd := n.nodes[n.rng.IntN(len(n.nodes))]
	key := fmt.Sprintf("k%d", n.rng.IntN(n.keySpace))
	switch r := n.rng.IntN(100); {
	case r < 60:
		v := strings.Repeat(fmt.Sprint(n.rng.IntN(10)), n.rng.IntN(60))
		n.logf("%s set %s=%q", nd.id, key, v)
		if err := nd.core.Set(n.now, key, v); err != nil {
			n.t.Fatal(err)
		}
	case r < 95:
		n.logf("%s delete %s", nd.id, key)
		if err := nd.core.Delete(n.now, key); err != nil {
			n.t.Fatal(err)
		}
	default:
		initial := map[string]string{}
		for range n.rng.IntN(3) {
			initial[fmt.Sprintf("k%d", n.rng.IntN(n.keySpace))] = "init"
		}
		n.logf("%s restart with %v", nd.id, initial)
		n.start(nd, initial)
	}
	n.flush(nd)
}

// runRound ticks every node in random order and delivers what is due.
func (n *propNet) runRound() {
	n.round++
	n.now = n.now.Add(100 * time.Millisecond)
	for _, i := range n.rng.Perm(len(n.nodes)) {
		nd := n.nodes[i]
		nd.core.Tick(n.now)
		n.flush(nd)
	}
	n.deliver()
}

// viewOf is what a node holds of another, for comparison.
type viewOf struct {
	Gen     uint64
	Version uint64
	State   map[string]string
}

// divergence returns the first difference between what the nodes hold of
// each other and what each holds of itself, or "".
func (n *propNet) divergence() string {
	for _, owner := range n.nodes {
		want := n.view(owner, owner.id)
		for _, nd := range n.nodes {
			if nd == owner {
				continue
			}
			if d := cmp.Diff(want, n.view(nd, owner.id)); d != "" {
				return fmt.Sprintf("%s's view of %s (-owner +%s):\n%s", nd.id, owner.id, nd.id, d)
			}
		}
	}
	return ""
}

func (n *propNet) view(nd *propNode, id string) *viewOf {
	info, ok := nd.core.NodeInfo(id, n.now)
	if !ok {
		return nil
	}
	st, _ := nd.core.State(id)
	return &viewOf{Gen: info.Generation, Version: info.Version, State: st}
}

func runConvergence(t *testing.T, seed uint64, nodes int, tune func(*Config)) {
	n := &propNet{
		t: t, rng: rand.New(rand.NewPCG(seed, 0xc0ffee)), byAddr: map[string]*propNode{},
		cut: map[string]bool{}, now: t0, tune: tune, keySpace: 12,
	}
	for i := range nodes {
		nd := &propNode{id: fmt.Sprintf("node-%d", i), addr: fmt.Sprintf("mem:%d", i)}
		n.nodes = append(n.nodes, nd)
		n.byAddr[nd.addr] = nd
	}
	for _, nd := range n.nodes {
		n.start(nd, nil)
	}
	defer func() {
		if t.Failed() {
			t.Logf("seed %d, last operations:\n%s", seed, strings.Join(n.ops[max(0, len(n.ops)-60):], "\n"))
		}
	}()

	// Chaos: operations, loss, reordering, partitions that come and go.
	n.loss = 0.1 + 0.3*n.rng.Float64()
	for range 150 {
		for range n.rng.IntN(3) {
			n.randomOp()
		}
		if n.rng.IntN(25) == 0 {
			clear(n.cut)
			for _, nd := range n.nodes {
				if n.rng.IntN(3) == 0 {
					n.cut[nd.addr] = true
				}
			}
			n.logf("partition %v", slices.Sorted(maps.Keys(n.cut)))
		}
		n.runRound()
	}

	// Heal and wait.
	n.loss = 0
	clear(n.cut)
	n.logf("heal")
	for range 600 {
		n.runRound()
		if n.divergence() == "" {
			t.Logf("seed %d: converged %d rounds after healing", seed, n.round-150)
			return
		}
	}
	t.Fatalf("seed %d: no convergence %d rounds after healing: %s", seed, n.round-150, n.divergence())
}

func TestConvergenceProperty(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			runConvergence(t, seed, 5+int(seed%3), func(c *Config) {
				c.TombstoneTTL = 2 * time.Second // collected during the run: resets are exercised
			})
		})
	}
}

// The same under the smallest datagrams, with values large enough that
// deltas are cut.
func TestConvergencePropertySmallPackets(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			runConvergence(t, 100+seed, 6, func(c *Config) {
				c.TombstoneTTL = 3 * time.Second
				c.MaxPacketSize = MinPacketSize
			})
		})
	}
}
