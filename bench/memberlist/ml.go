package main

import (
	"encoding/json"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// mlCluster is N memberlist nodes used as a key-value store, the way an
// application stores state on memberlist (and the way the figures of
// issue 18 were taken):
//
//   - each node owns its keys, each with a version; a write queues one
//     user broadcast (owner, key, value, version) on the node's
//     memberlist.TransmitLimitedQueue (RetransmitMult from the config),
//     which memberlist piggybacks on its gossip (Delegate.GetBroadcasts);
//     a receiver applies a broadcast of a version newer than it holds
//     (Delegate.NotifyMsg) and queues it again on its own queue, as serf
//     does with user events (-rebroadcast=false: only the writer
//     broadcasts, and push/pull carries it the rest of the way);
//   - anti-entropy is memberlist's push/pull: Delegate.LocalState sends
//     every owner's keys and versions, Delegate.MergeRemoteState keeps the
//     newer of each, at join and every PushPullInterval (scaled by
//     memberlist with N);
//   - the transport is memberlist's NetTransport on 127.0.0.1, wrapped to
//     count the datagrams and the stream bytes each node sends.
type mlCluster struct {
	nodes []*memberlist.Memberlist
	kvs   []*mlKV
	trs   []*mlTransport
}

// mlTransport counts what a node sends through memberlist's NetTransport.
type mlTransport struct {
	*memberlist.NetTransport
	w       wireCounter
	once    sync.Once
	streams <-chan net.Conn
}

var _ memberlist.NodeAwareTransport = (*mlTransport)(nil)

func (t *mlTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.w.datagram(len(b))
	return t.NetTransport.WriteTo(b, addr)
}

func (t *mlTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.w.datagram(len(b))
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *mlTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return t.w.dialled(c), nil
}

func (t *mlTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return t.w.dialled(c), nil
}

func (t *mlTransport) StreamCh() <-chan net.Conn {
	t.once.Do(func() { t.streams = forwardStreams(t.NetTransport.StreamCh(), &t.w) })
	return t.streams
}

// kvEntry is a key's value and its version at its owner.
type kvEntry struct {
	Value   string `json:"v"`
	Version uint64 `json:"n"`
}

// kvUpdate is one broadcast: a key of its owner at a version.
type kvUpdate struct {
	Owner   string `json:"o"`
	Key     string `json:"k"`
	Value   string `json:"v"`
	Version uint64 `json:"n"`
}

// mlKV is a node's key-value state and its memberlist delegates.
type mlKV struct {
	self        string
	rebroadcast bool
	queue       *memberlist.TransmitLimitedQueue
	arrivals    *arrivals
	mu          sync.Mutex
	data        map[string]map[string]kvEntry // owner -> key -> entry
	version     uint64                        // the last version of our own keys
}

// apply keeps u if it is newer than what is held, and says so.
func (kv *mlKV) apply(u kvUpdate) bool {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if u.Owner == kv.self {
		return false
	}
	keys := kv.data[u.Owner]
	if keys == nil {
		keys = map[string]kvEntry{}
		kv.data[u.Owner] = keys
	}
	if e, ok := keys[u.Key]; ok && e.Version >= u.Version {
		return false
	}
	keys[u.Key] = kvEntry{Value: u.Value, Version: u.Version}
	kv.arrivals.arrived(u.Key)
	return true
}

// set writes one of the node's own keys and broadcasts it.
func (kv *mlKV) set(key, value string) {
	kv.mu.Lock()
	kv.version++
	u := kvUpdate{Owner: kv.self, Key: key, Value: value, Version: kv.version}
	if kv.data[kv.self] == nil {
		kv.data[kv.self] = map[string]kvEntry{}
	}
	kv.data[kv.self][key] = kvEntry{Value: value, Version: u.Version}
	kv.mu.Unlock()
	kv.queue.QueueBroadcast(newBroadcast(u))
}

// NodeMeta is memberlist's Delegate: no metadata.
func (kv *mlKV) NodeMeta(int) []byte { return nil }

// NotifyMsg is memberlist's Delegate: a user broadcast arrived.
func (kv *mlKV) NotifyMsg(b []byte) {
	var u kvUpdate
	if json.Unmarshal(b, &u) != nil {
		return
	}
	if kv.apply(u) && kv.rebroadcast {
		kv.queue.QueueBroadcast(newBroadcast(u))
	}
}

// GetBroadcasts is memberlist's Delegate: what to piggyback on gossip.
func (kv *mlKV) GetBroadcasts(overhead, limit int) [][]byte {
	return kv.queue.GetBroadcasts(overhead, limit)
}

// LocalState is memberlist's Delegate: the whole state, for push/pull.
func (kv *mlKV) LocalState(bool) []byte {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	b, _ := json.Marshal(kv.data)
	return b
}

// MergeRemoteState is memberlist's Delegate: a peer's whole state.
func (kv *mlKV) MergeRemoteState(b []byte, _ bool) {
	var data map[string]map[string]kvEntry
	if json.Unmarshal(b, &data) != nil {
		return
	}
	for owner, keys := range data {
		for k, e := range keys {
			kv.apply(kvUpdate{Owner: owner, Key: k, Value: e.Value, Version: e.Version})
		}
	}
}

// broadcast is a kvUpdate in a TransmitLimitedQueue; a newer write of the
// same key replaces an older one still queued.
type broadcast struct {
	owner, key string
	msg        []byte
}

func newBroadcast(u kvUpdate) *broadcast {
	b, _ := json.Marshal(u)
	return &broadcast{owner: u.Owner, key: u.Key, msg: b}
}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*broadcast)
	return ok && ob.owner == b.owner && ob.key == b.key
}
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// mlEvents records departures (dead or left) for the bench, and counts
// the members for the broadcast queue (as memberlist's own queue counts
// them, without taking its locks).
type mlEvents struct {
	*arrivals
	members *atomic.Int64
}

func (e mlEvents) NotifyJoin(*memberlist.Node) { e.members.Add(1) }
func (e mlEvents) NotifyLeave(n *memberlist.Node) {
	e.members.Add(-1)
	e.left(n.Name)
}
func (e mlEvents) NotifyUpdate(*memberlist.Node) {}

func newML(o options) (*mlCluster, error) {
	c := &mlCluster{}
	quiet := log.New(io.Discard, "", 0)
	for i := range o.n {
		cfg := memberlist.DefaultLocalConfig()
		if o.lan {
			cfg = memberlist.DefaultLANConfig()
		}
		tr, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: quiet})
		if err != nil {
			c.stop()
			return nil, err
		}
		t := &mlTransport{NetTransport: tr}
		a := newArrivals()
		kv := &mlKV{self: name(i), rebroadcast: o.rebroadcast, arrivals: a, data: map[string]map[string]kvEntry{}}
		cfg.Name = name(i)
		cfg.BindAddr = "127.0.0.1"
		cfg.BindPort = tr.GetAutoBindPort()
		cfg.AdvertisePort = cfg.BindPort
		cfg.Transport = t
		cfg.Delegate = kv
		members := new(atomic.Int64)
		cfg.Events = mlEvents{arrivals: a, members: members}
		cfg.Logger = quiet
		if o.encrypt {
			cfg.SecretKey = benchKey
		}
		m, err := memberlist.Create(cfg)
		if err != nil {
			_ = tr.Shutdown()
			c.stop()
			return nil, err
		}
		kv.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return int(members.Load()) }, RetransmitMult: cfg.RetransmitMult}
		c.nodes, c.kvs, c.trs = append(c.nodes, m), append(c.kvs, kv), append(c.trs, t)
	}
	return c, nil
}

func (c *mlCluster) system() string { return "memberlist" }

func (c *mlCluster) join() error {
	seed := c.nodes[0].LocalNode().Address()
	for _, m := range c.nodes[1:] {
		if _, err := m.Join([]string{seed}); err != nil {
			return err
		}
	}
	return nil
}

func (c *mlCluster) formed(live int) bool {
	for _, m := range c.nodes[:live] {
		if m.NumMembers() != live {
			return false
		}
	}
	return true
}

func (c *mlCluster) set(i int, key string) error {
	c.kvs[i].set(key, "1")
	return nil
}

func (c *mlCluster) watcher(i int) *arrivals { return c.kvs[i].arrivals }

func (c *mlCluster) crash(i int) { _ = c.nodes[i].Shutdown() }

func (c *mlCluster) wire() (datagrams, streams uint64) {
	for _, t := range c.trs {
		datagrams += t.w.datagrams.Load()
		streams += t.w.streams.Load()
	}
	return datagrams, streams
}

func (c *mlCluster) stop() {
	for _, m := range c.nodes {
		_ = m.Shutdown()
	}
}
