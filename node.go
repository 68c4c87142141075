package scuttlebutt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Node is one member of a cluster: a Core driven by a clock, a transport and
// subscribers. It is safe for concurrent use.
//
// Subscribers are called from one goroutine of the node, never while the
// node holds a lock, so a callback may call the node; a slow callback delays
// later callbacks, not gossip. Events of one node arrive in version order.
type Node struct {
	cfg  Config
	log  *slog.Logger
	tr   Transport
	addr string

	mu      sync.Mutex // guards core and the fields below
	core    *Core
	closed  bool
	seeding bool      // a background seeding loop runs
	retryAt time.Time // next seeding attempt when no peer is alive
	retry   time.Duration
	leftCh  chan struct{} // closed when enough peers hold this node's Leave
	needAck int

	events  *eventQueue
	refused refusalLog // datagrams and streams refused for their encryption
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// Create starts a node: it listens, and gossips with the peers it learns
// of. It joins no cluster until Seed is called or a peer contacts it.
func Create(cfg *Config) (*Node, error) {
	full, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if full.ID == "" {
		full.ID = randomID()
	}
	log := full.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := full.Transport
	addr := full.AdvertiseAddr
	if tr == nil {
		nt, err := Listen(full.BindAddr)
		if err != nil {
			return nil, err
		}
		tr = nt
		if addr == "" {
			addr = advertise(nt.Addr())
		}
	} else if addr == "" {
		addr = tr.Addr()
	}
	full.Clock = clockOr(full.Clock)
	if full.Generation == 0 {
		full.Generation = uint64(full.Clock.Now().UnixNano())
	}
	core, err := NewCore(&full, addr, time.Now())
	if err != nil {
		tr.Close()
		return nil, err
	}
	n := &Node{
		cfg:    full,
		log:    log.With("node", full.ID),
		tr:     tr,
		addr:   addr,
		core:   core,
		retry:  full.SeedRetry,
		events: newEventQueue(),
		done:   make(chan struct{}),
	}
	n.wg.Add(3)
	go n.tickLoop()
	go n.packetLoop()
	go n.streamLoop()
	go n.dispatchLoop()
	n.log.Info("node started", "addr", addr, "cluster", full.ClusterID, "generation", core.Generation())
	return n, nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID returns this node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Addr returns the address this node advertises: the bound address once
// port 0 was resolved, with an unspecified host replaced by one of this
// host's addresses, or Config.AdvertiseAddr.
func (n *Node) Addr() string { return n.addr }

// Keyring returns the keyring that encrypts this node's gossip
// (Config.Keyring), or nil. Its Install, Use and Remove change the keys
// while the node runs: that is how keys are rotated.
func (n *Node) Keyring() *Keyring { return n.cfg.Keyring }

// Generation returns this incarnation's generation. It rises once after
// joining if the cluster remembered a higher one for this node's ID.
func (n *Node) Generation() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Generation()
}

// Now returns the wall-clock time by Config.Clock: the one source of the
// times written into state by the packages built on a node.
func (n *Node) Now() time.Time { return n.cfg.Clock.Now() }

// do runs f on the core under the lock, then sends what it produced and
// queues its events. Events are queued under the lock, so they keep the
// order in which the core produced them.
func (n *Node) do(f func(c *Core, now time.Time) error) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	err := f(n.core, time.Now())
	rd := n.core.Ready()
	n.events.push(rd.Events)
	// Added under the lock, before Close can mark the node closed and
	// wait: every push is waited for.
	n.wg.Add(len(rd.CatchUps))
	// Leave waits for acks, or until no live peer is left to give one
	// (all the others left or died too).
	if n.leftCh != nil && (n.core.LeaveAcked() >= n.needAck || n.core.Live() == 0) {
		close(n.leftCh)
		n.leftCh = nil
	}
	n.mu.Unlock()
	for _, m := range rd.Messages {
		if err := n.tr.WriteTo(m.Data, m.To); err != nil {
			n.log.Debug("send failed", "to", m.To, "err", err)
		}
	}
	for _, cu := range rd.CatchUps {
		go n.pushCatchUp(cu)
	}
	return err
}

// Seed joins the cluster through the given addresses ("host:port"): it
// pulls the full state of the first that answers over TCP, then gossips.
// Addresses that are this node's own are skipped, so every node of a
// cluster may be given the same list. The addresses are kept: the node
// gossips to them now and then so partitions heal, and seeds again when it
// knows no live peer.
//
// Seed returns nil once one seed answered, or at once if there is none to
// ask. If none answered it returns an error saying why, and keeps trying in
// the background with backoff (Config.SeedRetry up to MaxSeedRetry) until
// one answers or the node closes.
func (n *Node) Seed(addrs []string) error {
	if len(addrs) == 0 {
		return ErrNoSeeds
	}
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("scuttlebutt: seed %q: %w", a, err)
		}
	}
	if err := n.do(func(c *Core, _ time.Time) error { c.AddSeeds(addrs); return nil }); err != nil {
		return err
	}
	err := n.join(addrs)
	if err != nil {
		n.startSeeding(addrs)
	}
	return err
}

// join tries each address in turn and stops at the first full-state
// exchange that succeeds.
func (n *Node) join(addrs []string) error {
	var errs []error
	for _, a := range addrs {
		if a == n.addr || a == n.tr.Addr() {
			continue
		}
		id, err := n.exchange(a)
		if err == nil {
			n.log.Info("joined through seed", "seed", a, "peer", id)
			return nil
		}
		n.log.Debug("seed did not answer", "seed", a, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	if errs == nil {
		return nil // only ourselves: a first node waits to be joined
	}
	return fmt.Errorf("scuttlebutt: no seed answered, retrying in the background: %w", errors.Join(errs...))
}

// startSeeding retries join with backoff in the background until it
// succeeds or the node closes.
func (n *Node) startSeeding(addrs []string) {
	n.mu.Lock()
	if n.seeding || n.closed {
		n.mu.Unlock()
		return
	}
	n.seeding = true
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		delay := n.cfg.SeedRetry
		for {
			select {
			case <-n.done:
				return
			case <-time.After(delay):
			}
			if n.join(addrs) == nil {
				n.mu.Lock()
				n.seeding = false
				n.mu.Unlock()
				return
			}
			delay = min(2*delay, n.cfg.MaxSeedRetry)
		}
	}()
}

// exchange runs a full-state exchange with the node at addr: send ours,
// read theirs. It returns the peer's ID.
func (n *Node) exchange(addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.StreamTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := n.tr.Dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var mine []byte
	if err := n.do(func(c *Core, _ time.Time) (err error) { mine, err = c.FullState(); return }); err != nil {
		return "", err
	}
	if err := writeFrame(conn, mine); err != nil {
		return "", err
	}
	theirs, err := readFrame(conn, maxStreamSize)
	if err != nil {
		n.countFrame(err)
		return "", err
	}
	var id string
	err = n.do(func(c *Core, now time.Time) (err error) { id, err = c.StepFull(now, theirs); return })
	return id, err
}

// serveStream answers a full-state exchange started by another node.
func (n *Node) serveStream(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(n.cfg.StreamTimeout))
	theirs, err := readFrame(conn, maxStreamSize)
	if err != nil {
		n.log.Debug("bad stream", "from", conn.RemoteAddr(), "err", err)
		n.countFrame(err)
		return
	}
	var id string
	var mine []byte
	err = n.do(func(c *Core, now time.Time) (err error) {
		var full bool
		if id, full, err = c.StepStream(now, theirs); err != nil || !full {
			return err // a catch-up is answered with an empty frame
		}
		mine, err = c.FullState()
		return err
	})
	if err != nil {
		n.log.Debug("stream refused", "from", conn.RemoteAddr(), "err", err)
		if errors.Is(err, errAuth) || errors.Is(err, errPlaintext) || errors.Is(err, errEncrypted) {
			n.refused.note(n.log, time.Now(), conn.RemoteAddr().String(), err)
		}
		return
	}
	if err := writeFrame(conn, mine); err != nil {
		n.log.Debug("stream reply failed", "to", id, "err", err)
	}
}

// UpdateLocal sets one of this node's keys. Setting a key to the value it
// already has changes nothing. Keys are at most MaxKeySize bytes and may
// not start with ReservedPrefix; values at most MaxValueSize(MaxPacketSize)
// bytes.
func (n *Node) UpdateLocal(key, value string) error {
	return n.do(func(c *Core, now time.Time) error { return c.Set(now, key, value) })
}

// DeleteLocal deletes one of this node's keys. The delete spreads as a
// versioned tombstone; deleting a missing key changes nothing.
func (n *Node) DeleteLocal(key string) error {
	return n.do(func(c *Core, now time.Time) error { return c.Delete(now, key) })
}

// Lookup returns a key of a node as known here.
func (n *Node) Lookup(nodeID, key string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Lookup(nodeID, key)
}

// State returns a copy of all live keys of a node as known here.
func (n *Node) State(nodeID string) (map[string]string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.State(nodeID)
}

// Nodes lists the nodes known here, this one included, sorted by ID.
func (n *Node) Nodes() []NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Nodes(time.Now())
}

// NodeInfo returns what is known of one node.
func (n *Node) NodeInfo(nodeID string) (NodeInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.NodeInfo(nodeID, time.Now())
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Stats()
}

// Monitors returns the IDs of the nodes that monitor this one: those it
// sends its heartbeats to (docs/design.md, "Lean gossip").
func (n *Node) Monitors() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Monitors()
}

// Watched returns the IDs of the nodes this one monitors: it judges their
// heartbeats, and suspects and probes them when they fall silent.
func (n *Node) Watched() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Watched()
}

// Leave tells the cluster this node is leaving, waits until Fanout peers
// (or every live peer, if fewer) hold the news or ctx ends, then closes the
// node. Peers mark it left within a few rounds instead of waiting for the
// failure detector. On a cluster of one it returns at once. It returns
// ctx's error if ctx ended first; the node is closed either way.
func (n *Node) Leave(ctx context.Context) error {
	var wait chan struct{}
	err := n.do(func(c *Core, now time.Time) error {
		c.Leave(now)
		n.needAck = min(n.cfg.Fanout, c.Live())
		if c.LeaveAcked() < n.needAck {
			if n.leftCh == nil {
				n.leftCh = make(chan struct{})
			}
			wait = n.leftCh
		}
		// Tell some peers now rather than at the next round.
		c.Tick(now)
		return nil
	})
	if err != nil {
		return err
	}
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	n.log.Info("node left")
	return errors.Join(err, n.Close())
}

// Close stops the node without a word: peers find out through their
// failure detectors. Events already queued are still delivered to the
// subscribers. Close is idempotent.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		close(n.done)
		err = n.tr.Close()
		n.wg.Wait()
		n.events.close()
	})
	return err
}

func (n *Node) tickLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.GossipInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		var reseed []string
		_ = n.do(func(c *Core, now time.Time) error {
			c.Tick(now)
			// A node that knows no live peer seeds again, with backoff.
			switch {
			case c.Live() > 0:
				n.retry = n.cfg.SeedRetry
			case len(c.seeds) > 0 && !n.seeding && !now.Before(n.retryAt):
				reseed = c.Seeds()
				n.retryAt = now.Add(n.retry)
				n.retry = min(2*n.retry, n.cfg.MaxSeedRetry)
			}
			return nil
		})
		if reseed != nil {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				_ = n.join(reseed)
			}()
		}
	}
}

func (n *Node) packetLoop() {
	defer n.wg.Done()
	for p := range n.tr.Packets() {
		err := n.do(func(c *Core, _ time.Time) error { return c.Step(p.At, p.From, p.Data) })
		if err == nil || errors.Is(err, ErrClosed) {
			continue
		}
		n.log.Debug("packet dropped", "from", p.From, "bytes", len(p.Data), "err", err)
		if errors.Is(err, errAuth) || errors.Is(err, errPlaintext) || errors.Is(err, errEncrypted) {
			n.refused.note(n.log, p.At, p.From, err)
		}
	}
}

// refusalLog turns datagrams refused for their encryption into at most one
// warning a minute: a peer with the wrong key sends several a second, and
// an attacker can send far more.
// It is safe for concurrent use (datagrams and streams).
type refusalLog struct {
	mu    sync.Mutex
	last  time.Time
	count int
}

func (r *refusalLog) note(log *slog.Logger, now time.Time, from string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if now.Sub(r.last) < time.Minute {
		return
	}
	log.Warn("refusing datagrams that fail encryption checks; check that every node has a key in common (and -encrypt on all or none)",
		"refused", r.count, "latest_from", from, "reason", err)
	r.last, r.count = now, 0
}

func (n *Node) streamLoop() {
	defer n.wg.Done()
	for conn := range n.tr.Streams() {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.serveStream(conn)
		}()
	}
}

// dispatchLoop calls the subscribers, one event at a time, in order.
func (n *Node) dispatchLoop() {
	for {
		batch, ok := n.events.pop()
		if !ok {
			return
		}
		for _, e := range batch {
			n.deliver(e)
		}
	}
}

func (n *Node) deliver(e Event) {
	ns, ss := n.cfg.NodeSubscriber, n.cfg.StateSubscriber
	switch e.Kind {
	case EventJoin:
		n.log.Info("node joined", "peer", e.NodeID)
		if ns != nil {
			ns.NotifyJoin(e.NodeID)
		}
	case EventLeave:
		n.log.Info("node gone", "peer", e.NodeID)
		if ns != nil {
			ns.NotifyLeave(e.NodeID)
		}
	case EventStatus:
		n.log.Debug("status", "peer", e.NodeID, "from", e.From, "to", e.To)
		if s, ok := ns.(StatusSubscriber); ok {
			s.NotifyStatus(e.NodeID, e.From, e.To)
		}
	case EventUpdate:
		if ss != nil {
			ss.NotifyUpdate(e.NodeID, e.Key, e.Value)
		}
	case EventDelete:
		if s, ok := ss.(DeleteSubscriber); ok {
			s.NotifyDelete(e.NodeID, e.Key)
		}
	case EventLimit:
		n.log.Warn("state limit reached: refusing state from peers past it (logged once; Stats.Refused counts)",
			"limit", e.Key, "node", e.NodeID)
	}
}

// eventQueue is an unbounded FIFO of events between the node's lock and the
// dispatcher, so that the core never waits for a subscriber.
type eventQueue struct {
	mu     sync.Mutex
	items  []Event
	closed bool
	ready  chan struct{} // has a value when items is not empty or closed
}

func newEventQueue() *eventQueue { return &eventQueue{ready: make(chan struct{}, 1)} }

func (q *eventQueue) push(es []Event) {
	if len(es) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, es...)
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// pop waits for events and returns all that are queued; false once the
// queue is closed and empty.
func (q *eventQueue) pop() ([]Event, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			batch := q.items
			q.items = nil
			q.mu.Unlock()
			return batch, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.ready
	}
}

// countFrame counts a stream frame refused before it reached the core: one
// that declared more than a stream may carry is counted as
// stream_too_large (a stream cut short is the connection's failure, not
// the peer's message, and is not counted).
func (n *Node) countFrame(err error) {
	if errors.Is(err, errTooLarge) {
		_ = n.do(func(c *Core, _ time.Time) error {
			c.stats.Dropped["stream_"+dropReason(err)]++
			return nil
		})
	}
}

// pushCatchUp runs a catch-up stream the core asked for (catchup.go): one
// frame with the difference, bounded by StreamTimeout, then the peer's
// empty frame once it applied it. The core hears of the end either way.
func (n *Node) pushCatchUp(cu CatchUp) {
	defer n.wg.Done()
	err := n.catchUpStream(cu)
	if err != nil {
		n.log.Debug("catch-up failed", "peer", cu.Peer, "to", cu.To, "err", err)
	}
	_ = n.do(func(c *Core, now time.Time) error { c.CatchUpDone(cu.Peer, now); return nil })
}

func (n *Node) catchUpStream(cu CatchUp) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.StreamTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := n.tr.Dial(ctx, cu.To)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Close does not wait StreamTimeout for a peer that stopped reading.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := writeFrame(conn, cu.Data); err != nil {
		return err
	}
	_, err = readFrame(conn, 0)
	return err
}
