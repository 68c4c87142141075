// Package memnet is an in-memory Transport for scuttlebutt Nodes: real
// goroutines and timers, but no sockets, with loss and partitions under
// the test's control. (internal/simnet is the deterministic, virtual-time
// counterpart that steps Cores directly.)
package memnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Network connects the transports made by Listen.
type Network struct {
	mu    sync.Mutex
	ends  map[string]*Transport
	group map[string]int // partition group by address; absent: 0
	loss  float64
	rng   *rand.Rand
	next  int
}

// New returns an empty network.
func New() *Network {
	return &Network{ends: make(map[string]*Transport), group: make(map[string]int), rng: rand.New(rand.NewPCG(1, 2))}
}

// SetLoss sets the probability that a datagram is lost.
func (n *Network) SetLoss(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = p
}

// Partition splits the network: addresses in different groups cannot
// reach each other; addresses in no group are in group 0.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
	for i, g := range groups {
		for _, a := range g {
			n.group[a] = i + 1
		}
	}
}

// Heal ends all partitions.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
}

// Listen returns a transport at a new address "mem:N".
func (n *Network) Listen() *Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	t := &Transport{
		net:     n,
		addr:    fmt.Sprintf("mem:%d", n.next),
		packets: make(chan scuttlebutt.Packet, 1024),
		streams: make(chan net.Conn, 16),
	}
	n.ends[t.addr] = t
	return t
}

// route returns the transport at to if from can reach it now.
func (n *Network) route(from, to string, datagram bool) *Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.ends[to]
	if t == nil || n.group[from] != n.group[to] || datagram && n.rng.Float64() < n.loss {
		return nil
	}
	return t
}

// Transport is one endpoint of a Network; it implements
// scuttlebutt.Transport.
type Transport struct {
	net     *Network
	addr    string
	packets chan scuttlebutt.Packet
	streams chan net.Conn
	mu      sync.Mutex // guards closed and the channels' closing
	closed  bool
}

// Addr returns the transport's address.
func (t *Transport) Addr() string { return t.addr }

// WriteTo delivers a copy of b to addr, unless it is lost, partitioned
// away, or the receiver's queue is full (as a socket buffer would drop it).
func (t *Transport) WriteTo(b []byte, addr string) error {
	to := t.net.route(t.addr, addr, true)
	if to == nil {
		return nil
	}
	to.mu.Lock()
	defer to.mu.Unlock()
	if to.closed {
		return nil
	}
	select {
	case to.packets <- scuttlebutt.Packet{From: t.addr, Data: append([]byte(nil), b...), At: time.Now()}:
	default:
	}
	return nil
}

// Packets delivers received datagrams.
func (t *Transport) Packets() <-chan scuttlebutt.Packet { return t.packets }

// Streams delivers accepted streams.
func (t *Transport) Streams() <-chan net.Conn { return t.streams }

// Dial connects to the transport at addr through an in-memory pipe.
func (t *Transport) Dial(ctx context.Context, addr string) (net.Conn, error) {
	to := t.net.route(t.addr, addr, false)
	if to == nil {
		return nil, fmt.Errorf("memnet: dial %s: %w", addr, errUnreachable)
	}
	mine, theirs := net.Pipe()
	to.mu.Lock()
	if to.closed {
		to.mu.Unlock()
		return nil, fmt.Errorf("memnet: dial %s: %w", addr, errUnreachable)
	}
	select {
	case to.streams <- theirs:
		to.mu.Unlock()
		return mine, nil
	default:
		to.mu.Unlock()
		return nil, fmt.Errorf("memnet: dial %s: backlog full", addr)
	}
}

var errUnreachable = errors.New("unreachable")

// Close removes the transport from the network and closes its channels.
func (t *Transport) Close() error {
	t.net.mu.Lock()
	delete(t.net.ends, t.addr)
	t.net.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.packets)
		close(t.streams)
	}
	return nil
}
