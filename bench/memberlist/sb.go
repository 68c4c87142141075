package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// sbCluster is N scuttlebutt nodes, set up as bench/cluster sets them up:
// the preset's config, a transport on 127.0.0.1 that counts the bytes it
// sends, and a subscriber that records arrivals and departures.
type sbCluster struct {
	nodes []*scuttlebutt.Node
	trs   []*sbTransport
	subs  []*arrivals
}

// sbTransport counts what a node sends: datagrams and streams.
type sbTransport struct {
	scuttlebutt.Transport
	w       wireCounter
	once    sync.Once
	streams <-chan net.Conn
}

func (t *sbTransport) WriteTo(b []byte, addr string) error {
	t.w.datagram(len(b))
	return t.Transport.WriteTo(b, addr)
}

func (t *sbTransport) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := t.Transport.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return t.w.dialled(c), nil
}

func (t *sbTransport) Streams() <-chan net.Conn {
	t.once.Do(func() { t.streams = forwardStreams(t.Transport.Streams(), &t.w) })
	return t.streams
}

// arrivals records when a node first saw each update and each departure;
// it serves both systems.
type arrivals struct {
	mu   sync.Mutex
	seen map[string]time.Time // key "bench-I" -> first arrival
	gone map[string]time.Time // node name -> declared dead or left
}

func newArrivals() *arrivals {
	return &arrivals{seen: map[string]time.Time{}, gone: map[string]time.Time{}}
}

func (a *arrivals) arrived(key string) {
	if !strings.HasPrefix(key, "bench-") {
		return
	}
	now := time.Now()
	a.mu.Lock()
	if _, ok := a.seen[key]; !ok {
		a.seen[key] = now
	}
	a.mu.Unlock()
}

func (a *arrivals) left(name string) {
	now := time.Now()
	a.mu.Lock()
	if _, ok := a.gone[name]; !ok {
		a.gone[name] = now
	}
	a.mu.Unlock()
}

func (a *arrivals) seenAt(key string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.seen[key]
	return t, ok
}

func (a *arrivals) goneAt(name string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.gone[name]
	return t, ok
}

// sbWatcher adapts arrivals to scuttlebutt's subscribers.
type sbWatcher struct{ *arrivals }

func (w sbWatcher) NotifyUpdate(_, key, _ string) { w.arrived(key) }
func (w sbWatcher) NotifyJoin(string)             {}
func (w sbWatcher) NotifyLeave(id string)         { w.left(id) }

func newSB(o options) (*sbCluster, error) {
	c := &sbCluster{}
	for i := range o.n {
		tr, err := scuttlebutt.Listen("127.0.0.1:0")
		if err != nil {
			c.stop()
			return nil, err
		}
		t := &sbTransport{Transport: tr}
		a := newArrivals()
		cfg := scuttlebutt.DefaultLocalConfig()
		if o.lan {
			cfg = scuttlebutt.DefaultLANConfig()
		}
		cfg.ID = name(i)
		cfg.Transport = t
		cfg.StateSubscriber, cfg.NodeSubscriber = sbWatcher{a}, sbWatcher{a}
		if o.encrypt {
			if cfg.Keyring, err = scuttlebutt.NewKeyring(benchKey); err != nil {
				c.stop()
				return nil, err
			}
		}
		n, err := scuttlebutt.Create(cfg)
		if err != nil {
			_ = tr.Close()
			c.stop()
			return nil, err
		}
		c.nodes, c.trs, c.subs = append(c.nodes, n), append(c.trs, t), append(c.subs, a)
	}
	return c, nil
}

func (c *sbCluster) system() string { return "scuttlebutt" }

func (c *sbCluster) join() error {
	for _, n := range c.nodes[1:] {
		if err := n.Seed([]string{c.nodes[0].Addr()}); err != nil {
			return err
		}
	}
	return nil
}

func (c *sbCluster) formed(live int) bool {
	for _, n := range c.nodes[:live] {
		alive := 0
		for _, i := range n.Nodes() {
			if i.Status == scuttlebutt.StatusAlive {
				alive++
			}
		}
		if alive != live {
			return false
		}
	}
	return true
}

func (c *sbCluster) set(i int, key string) error { return c.nodes[i].UpdateLocal(key, "1") }

func (c *sbCluster) watcher(i int) *arrivals { return c.subs[i] }

func (c *sbCluster) crash(i int) { _ = c.nodes[i].Close() }

func (c *sbCluster) wire() (datagrams, streams uint64) {
	for _, t := range c.trs {
		datagrams += t.w.datagrams.Load()
		streams += t.w.streams.Load()
	}
	return datagrams, streams
}

func (c *sbCluster) stop() {
	for _, n := range c.nodes {
		_ = n.Close()
	}
}

// name is node i's name in both systems.
func name(i int) string { return fmt.Sprintf("node-%03d", i) }
