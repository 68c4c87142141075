// Package simnet is a deterministic in-memory network for scuttlebutt
// cores: a virtual clock, a seeded random source, message loss, delay,
// partitions, crashes and restarts. It steps Cores directly, on one
// goroutine, so a run of a thousand nodes takes seconds and the same seed
// gives the same run.
package simnet

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Epoch is the virtual time at which every network starts.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Options configure a Network.
type Options struct {
	Seed     uint64
	Loss     float64       // probability that a datagram is lost
	MinDelay time.Duration // delivery delay, uniform in [MinDelay, MaxDelay]
	MaxDelay time.Duration
	// CheckEvery is how often, in virtual time, RunUntil evaluates its
	// condition (default 10ms): checking a thousand nodes' convergence
	// after every datagram would dominate the run.
	CheckEvery time.Duration
}

// Node is one simulated node.
type Node struct {
	Addr string
	Core *scuttlebutt.Core
	Up   bool
	cfg  scuttlebutt.Config
	gen  int // bumped on restart, so stale ticks are ignored
	// Events received, if Network.KeepEvents.
	Events []scuttlebutt.Event
	// BytesOut and PacketsOut count what this node sent in datagrams;
	// StreamBytesOut and StreamsOut what it sent over catch-up streams.
	BytesOut, PacketsOut       uint64
	StreamBytesOut, StreamsOut uint64
	// Loss is the probability that a datagram from or to this node is lost,
	// on top of the network's: a node on a bad link.
	Loss float64
	// InLoss is the probability that a datagram to this node is lost, on
	// top of Loss: a node whose inbound traffic suffers (a full receive
	// queue, a one-way firewall rule).
	InLoss float64
}

// Network is the simulated network and its clock.
type Network struct {
	Now   time.Time
	Nodes []*Node
	// OnEvent, if set, sees every event of every node as it happens.
	OnEvent func(n *Node, e scuttlebutt.Event)
	// KeepEvents keeps each node's events in Node.Events.
	KeepEvents bool
	// Oversize counts datagrams larger than the sender's MaxPacketSize.
	Oversize int
	// Delivered and Dropped count datagrams.
	Delivered, Dropped int

	opts   Options
	rng    *rand.Rand
	byAddr map[string]*Node
	group  map[string]int     // partition group by address; absent: 0
	cuts   map[[2]string]bool // one-way cuts: from, to
	queue  queue
	seq    uint64
}

// New returns an empty network at Epoch.
func New(opts Options) *Network {
	return &Network{
		Now:    Epoch,
		opts:   opts,
		rng:    rand.New(rand.NewPCG(opts.Seed, 0x5eed)),
		byAddr: make(map[string]*Node),
		group:  make(map[string]int),
		cuts:   make(map[[2]string]bool),
	}
}

// SetLoss changes the loss probability.
func (n *Network) SetLoss(p float64) { n.opts.Loss = p }

// Add starts a node with cfg (its ID must be set) at the current time, with
// its first tick at a random phase of its gossip interval.
func (n *Network) Add(cfg *scuttlebutt.Config) (*Node, error) {
	addr := fmt.Sprintf("sim:%d", len(n.Nodes))
	nd := &Node{Addr: addr, cfg: *cfg}
	n.Nodes = append(n.Nodes, nd)
	n.byAddr[addr] = nd
	return nd, n.start(nd)
}

func (n *Network) start(nd *Node) error {
	cfg := nd.cfg
	if cfg.RandSeed == 0 {
		cfg.RandSeed = int64(n.rng.Uint64() >> 1)
	}
	if cfg.Generation == 0 {
		cfg.Generation = uint64(n.Now.UnixNano())
	}
	c, err := scuttlebutt.NewCore(&cfg, nd.Addr, n.Now)
	if err != nil {
		return err
	}
	nd.Core, nd.Up = c, true
	nd.gen++
	interval := n.interval(nd)
	n.push(&item{at: n.Now.Add(time.Duration(n.rng.Int64N(int64(interval)))), node: nd, tick: true, gen: nd.gen})
	return nil
}

func (n *Network) interval(nd *Node) time.Duration {
	if nd.cfg.GossipInterval > 0 {
		return nd.cfg.GossipInterval
	}
	return scuttlebutt.DefaultLANConfig().GossipInterval
}

// Crash stops a node without a word: it neither sends nor receives.
func (n *Network) Crash(nd *Node) { nd.Up = false; nd.gen++ }

// Resume starts a crashed node again with its core as it was, as a
// process that was stopped (SIGSTOP, a long pause, a suspended VM) and
// continues: it ticks at once and receives again; what was sent to it
// meanwhile is lost.
func (n *Network) Resume(nd *Node) {
	if nd.Up {
		return
	}
	nd.Up = true
	nd.gen++
	n.push(&item{at: n.Now, node: nd, tick: true, gen: nd.gen})
}

// Restart starts a crashed node again with the same ID and a new
// generation (the current virtual time).
func (n *Network) Restart(nd *Node, initial map[string]string) error {
	n.Crash(nd)
	nd.cfg.InitialState = initial
	nd.cfg.Generation = 0
	return n.start(nd)
}

// Partition splits the network: nodes in different groups cannot reach
// each other. Nodes in no group are in group 0.
func (n *Network) Partition(groups ...[]*Node) {
	clear(n.group)
	for i, g := range groups {
		for _, nd := range g {
			n.group[nd.Addr] = i + 1
		}
	}
}

// Heal ends all partitions.
func (n *Network) Heal() { clear(n.group); clear(n.cuts) }

// Cut loses every datagram from one node to another, one way only, until
// Heal.
func (n *Network) Cut(from, to *Node) { n.cuts[[2]string{from.Addr, to.Addr}] = true }

// Join runs a full-state exchange between nd and the node at seed, as the
// TCP join of a Node does. It returns false if either is down.
func (n *Network) Join(nd, seed *Node) bool {
	if !nd.Up || !seed.Up || n.group[nd.Addr] != n.group[seed.Addr] {
		return false
	}
	mine, err := nd.Core.FullState()
	if err != nil {
		panic(err)
	}
	if _, err := seed.Core.StepFull(n.Now, mine); err != nil {
		panic(err)
	}
	theirs, err := seed.Core.FullState()
	if err != nil {
		panic(err)
	}
	if _, err := nd.Core.StepFull(n.Now, theirs); err != nil {
		panic(err)
	}
	n.flush(seed)
	n.flush(nd)
	return true
}

// Bootstrap makes every up node know every other at once, as a cluster
// that has run for a while: the first node takes every node's full state,
// then every node takes the first's. It spares a test of a thousand nodes
// the rounds a cold start needs.
func (n *Network) Bootstrap() {
	var up []*Node
	for _, nd := range n.Nodes {
		if nd.Up {
			up = append(up, nd)
		}
	}
	if len(up) < 2 {
		return
	}
	hub := up[0]
	for _, nd := range up[1:] {
		state, err := nd.Core.FullState()
		if err != nil {
			panic(err)
		}
		if _, err := hub.Core.StepFull(n.Now, state); err != nil {
			panic(err)
		}
	}
	state, err := hub.Core.FullState()
	if err != nil {
		panic(err)
	}
	for _, nd := range up[1:] {
		if _, err := nd.Core.StepFull(n.Now, state); err != nil {
			panic(err)
		}
		n.flush(nd)
	}
	n.flush(hub)
}

// Do runs f on a node's core at the current time (a local update) and
// sends what it produced.
func (n *Network) Do(nd *Node, f func(c *scuttlebutt.Core)) {
	f(nd.Core)
	n.flush(nd)
}

// Run advances the clock by d, delivering datagrams and ticking nodes in
// time order.
func (n *Network) Run(d time.Duration) { n.RunUntil(nil, d) }

// RunUntil runs until cond holds or d passed, and reports whether cond
// held. cond is checked before the first step and then whenever
// Options.CheckEvery of virtual time has passed, so the time at which it is
// found true is late by at most that much.
func (n *Network) RunUntil(cond func() bool, d time.Duration) bool {
	end := n.Now.Add(d)
	every := n.opts.CheckEvery
	if every <= 0 {
		every = 10 * time.Millisecond
	}
	var next time.Time // zero: check at once
	for n.queue.Len() > 0 && !n.queue[0].at.After(end) {
		if cond != nil && !n.Now.Before(next) {
			if cond() {
				return true
			}
			next = n.Now.Add(every)
		}
		it := heap.Pop(&n.queue).(*item)
		n.Now = it.at
		nd := it.node
		if it.stream != nil {
			n.deliverStream(it)
			continue
		}
		if !nd.Up || (it.tick && it.gen != nd.gen) {
			continue
		}
		if it.tick {
			nd.Core.Tick(n.Now)
			n.push(&item{at: n.Now.Add(n.interval(nd)), node: nd, tick: true, gen: nd.gen})
		} else {
			_ = nd.Core.Step(n.Now, it.from, it.data) // bad input is counted by the core
		}
		n.flush(nd)
	}
	if cond != nil && cond() {
		return true
	}
	n.Now = end
	return false
}

// flush sends a node's outbox through the network and hands its events on.
func (n *Network) flush(nd *Node) {
	rd := nd.Core.Ready()
	for _, e := range rd.Events {
		if n.KeepEvents {
			nd.Events = append(nd.Events, e)
		}
		if n.OnEvent != nil {
			n.OnEvent(nd, e)
		}
	}
	limit := nd.cfg.MaxPacketSize
	if limit == 0 {
		limit = scuttlebutt.DefaultLANConfig().MaxPacketSize
	}
	for _, cu := range rd.CatchUps {
		nd.StreamBytesOut += uint64(len(cu.Data))
		nd.StreamsOut++
		n.push(&item{at: n.Now.Add(n.streamDelay(len(cu.Data))), node: nd, from: nd.Addr, stream: &cu, gen: nd.gen})
	}
	for _, m := range rd.Messages {
		nd.BytesOut += uint64(len(m.Data))
		nd.PacketsOut++
		if len(m.Data) > limit {
			n.Oversize++
		}
		to := n.byAddr[m.To]
		if to == nil || n.group[nd.Addr] != n.group[m.To] || n.cuts[[2]string{nd.Addr, m.To}] || n.rng.Float64() < n.opts.Loss || n.lost(nd, to) {
			n.Dropped++
			continue
		}
		delay := n.opts.MinDelay
		if span := n.opts.MaxDelay - n.opts.MinDelay; span > 0 {
			delay += time.Duration(n.rng.Int64N(int64(span)))
		}
		n.Delivered++
		n.push(&item{at: n.Now.Add(delay), node: to, from: nd.Addr, data: m.Data})
	}
}

// StreamBandwidth is the rate, in bytes per second of virtual time, at
// which a catch-up stream's frame travels; it arrives after the network's
// delay plus its size at that rate (a loopback TCP connection moves
// gigabytes a second; this is a cautious LAN).
const StreamBandwidth = 100 << 20

func (n *Network) streamDelay(size int) time.Duration {
	return n.opts.MinDelay + time.Duration(float64(size)/StreamBandwidth*float64(time.Second))
}

// deliverStream delivers a catch-up stream (it.node is the sender) if the
// sender stayed up since it sent it, the receiver is up, both are in the
// same partition, and no cut lies between them either way (a TCP
// connection needs both directions); then it tells the sender the stream
// ended, as a Node does whatever the outcome. Streams are not lost at
// random: TCP retransmits.
func (n *Network) deliverStream(it *item) {
	from, cu := it.node, it.stream
	to := n.byAddr[cu.To]
	if from.Up && it.gen == from.gen && to != nil && to.Up && n.group[from.Addr] == n.group[to.Addr] &&
		!n.cuts[[2]string{from.Addr, to.Addr}] && !n.cuts[[2]string{to.Addr, from.Addr}] {
		_, _, _ = to.Core.StepStream(n.Now, cu.Data) // bad input is counted by the core
		n.flush(to)
	}
	from.Core.CatchUpDone(cu.Peer, n.Now)
	if from.Up {
		n.flush(from)
	}
}

// lost draws the loss of a datagram on the links of its two ends; it
// draws nothing when neither end has a loss of its own, so that setting
// one node's Loss does not change the rest of a seeded run.
func (n *Network) lost(from, to *Node) bool {
	p := 1 - (1-from.Loss)*(1-to.Loss)*(1-to.InLoss)
	return p > 0 && n.rng.Float64() < p
}

func (n *Network) push(it *item) {
	n.seq++
	it.seq = n.seq
	heap.Push(&n.queue, it)
}

// item is a scheduled tick or delivery.
type item struct {
	at   time.Time
	seq  uint64
	node *Node
	tick bool
	gen  int
	from string
	data []byte
	// stream, if set, is a catch-up stream sent by node.
	stream *scuttlebutt.CatchUp
}

type queue []*item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return it
}
