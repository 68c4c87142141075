package scuttlebutt

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"
)

// hostileAcks encodes, sealed with the cluster key, Acks from "evil"
// carrying deltas, as many per datagram as fit in 60,000 bytes.
func hostileAcks(t testing.TB, sealer *Core, deltas []nodeDelta) [][]byte {
	t.Helper()
	var out [][]byte
	m := message{Type: msgAck, Cluster: sealer.cfg.ClusterID, From: "evil", Gen: 1}
	flush := func() {
		var buf bytes.Buffer
		b, err := m.encode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sealer.wrap(b))
		m.Deltas = nil
	}
	size := 0
	for _, d := range deltas {
		if size+d.size() > 60_000 && len(m.Deltas) > 0 {
			flush()
			size = 0
		}
		m.Deltas = append(m.Deltas, d)
		size += d.size()
	}
	if len(m.Deltas) > 0 {
		flush()
	}
	return out
}

// bigPackets lets test cores take the hostile peer's 60,000-byte datagrams.
func bigPackets(c *Config) { c.MaxPacketSize = MaxPacketLimit }

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A peer holding the cluster key sends valid deltas for 100,000 fake
// nodes: the receiver takes MaxNodes, refuses the rest (counted, reported
// once), its memory stays bounded, and an honest peer's updates still
// arrive.
func TestHostilePeerManyNodes(t *testing.T) {
	tune := both(withKeys(key1), bigPackets)
	a := newTestCore(t, "a", tune)
	honest := newTestCore(t, "honest", tune)
	evil := newTestCore(t, "evil", tune)
	joinCores(t, t0, a, honest)
	heap0 := heapInUse()

	const fakes = 100_000
	deltas := make([]nodeDelta, fakes)
	for i := range deltas {
		deltas[i] = nodeDelta{ID: fmt.Sprintf("fake-%06d", i), Gen: 1, MaxVersion: 1,
			Entries: []wireEntry{{Key: "k", Value: "v", Version: 1}}}
	}
	for _, d := range hostileAcks(t, evil, deltas) {
		if err := a.Step(t0, "addr-evil", d); err != nil {
			t.Fatalf("a valid datagram refused: %v", err)
		}
	}
	deltas = nil
	events := takeEvents(a)
	if n := len(a.peers); n != a.cfg.MaxNodes {
		t.Fatalf("a holds %d nodes, MaxNodes is %d", n, a.cfg.MaxNodes)
	}
	if got, want := a.Stats().Refused["nodes"], uint64(fakes-(a.cfg.MaxNodes-2)); got != want {
		t.Fatalf("Refused[nodes] = %d, want %d", got, want)
	}
	limits := 0
	for _, e := range events {
		if e.Kind == EventLimit {
			limits++
			if e.Key != "nodes" {
				t.Errorf("EventLimit for %q", e.Key)
			}
		}
	}
	if limits != 1 {
		t.Fatalf("%d EventLimit events, want 1", limits)
	}
	grown := int64(heapInUse()) - int64(heap0)
	t.Logf("heap grew by %.1f MB for %d nodes held (%d refused)", float64(grown)/(1<<20), len(a.peers), fakes-len(a.peers))
	if grown > 64<<20 {
		t.Fatalf("heap grew by %d MB for 10,000 nodes", grown>>20)
	}

	// The honest peer is still heard: a change of it arrives.
	mustSet(t, honest, t0, "after", "attack")
	exchange(t, t0, honest, a)
	if v, _ := a.Lookup("honest", "after"); v != "attack" {
		t.Fatalf("the honest peer's update did not arrive: %q", v)
	}
}

// One fake node with 1,000,000 keys: the receiver holds MaxKeysPerNode of
// them, a contiguous prefix of the node's versions, and refuses the rest.
func TestHostilePeerManyKeys(t *testing.T) {
	tune := both(withKeys(key1), bigPackets)
	a := newTestCore(t, "a", tune)
	honest := newTestCore(t, "honest", tune)
	evil := newTestCore(t, "evil", tune)
	joinCores(t, t0, a, honest)

	const keys = 1_000_000
	const perDelta = 2000
	heap0 := heapInUse()
	var datagrams [][]byte
	for from := 0; from < keys; from += perDelta {
		d := nodeDelta{ID: "fat", Gen: 1, FromVersion: uint64(from), MaxVersion: uint64(from + perDelta)}
		for v := from + 1; v <= from+perDelta; v++ {
			d.Entries = append(d.Entries, wireEntry{Key: fmt.Sprintf("k%07d", v), Value: "v", Version: uint64(v)})
		}
		datagrams = append(datagrams, hostileAcks(t, evil, []nodeDelta{d})...)
	}
	for _, d := range datagrams {
		if err := a.Step(t0, "addr-evil", d); err != nil {
			t.Fatalf("a valid datagram refused: %v", err)
		}
	}
	datagrams = nil
	p := a.peers["fat"]
	if p == nil || len(p.keys) != a.cfg.MaxKeysPerNode {
		t.Fatalf("a holds %v keys of the fat node, MaxKeysPerNode is %d", p, a.cfg.MaxKeysPerNode)
	}
	checkInvariants(t, p)
	if p.maxVersion != uint64(a.cfg.MaxKeysPerNode) {
		t.Fatalf("a holds version %d of the fat node with %d keys: not the prefix", p.maxVersion, len(p.keys))
	}
	if a.Stats().Refused["keys_per_node"] == 0 {
		t.Fatal("no refusal counted")
	}
	grown := int64(heapInUse()) - int64(heap0)
	t.Logf("heap grew by %.1f MB for %d keys held of %d sent", float64(grown)/(1<<20), len(p.keys), keys)
	if grown > 32<<20 {
		t.Fatalf("heap grew by %d MB", grown>>20)
	}
	mustSet(t, honest, t0, "after", "attack")
	exchange(t, t0, honest, a)
	if v, _ := a.Lookup("honest", "after"); v != "attack" {
		t.Fatalf("the honest peer's update did not arrive: %q", v)
	}
}

// Each byte limit refuses what would pass it, and a replacing delta (a
// node first seen) too large is refused whole.
func TestStateByteLimits(t *testing.T) {
	value := string(bytes.Repeat([]byte{'v'}, 800))
	perEntry := entrySize("k0000", value)
	t.Run("node bytes", func(t *testing.T) {
		a := newTestCore(t, "a", both(bigPackets, func(c *Config) { c.MaxNodeBytes = 10 * perEntry }))
		evil := newTestCore(t, "evil", nil)
		d := nodeDelta{ID: "fat", Gen: 1, MaxVersion: 20}
		for v := 1; v <= 20; v++ {
			d.Entries = append(d.Entries, wireEntry{Key: fmt.Sprintf("k%04d", v), Value: value, Version: uint64(v)})
		}
		for _, dg := range hostileAcks(t, evil, []nodeDelta{d}) {
			if err := a.Step(t0, "addr-evil", dg); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := a.peers["fat"]; ok {
			t.Fatal("a node first seen over MaxNodeBytes was taken")
		}
		if a.Stats().Refused["node_bytes"] != 1 {
			t.Fatalf("Refused = %v", a.Stats().Refused)
		}
		// Incrementally: ten entries fit exactly, the rest is refused.
		first := d
		first.Entries = d.Entries[:1]
		first.MaxVersion = 1
		rest := d
		rest.FromVersion = 1
		rest.Entries = d.Entries[1:]
		for _, dg := range hostileAcks(t, evil, []nodeDelta{first, rest}) {
			if err := a.Step(t0, "addr-evil", dg); err != nil {
				t.Fatal(err)
			}
		}
		p := a.peers["fat"]
		checkInvariants(t, p)
		if len(p.keys) != 10 || p.maxVersion != 10 || p.bytes > a.cfg.MaxNodeBytes {
			t.Fatalf("holds %d keys up to version %d, %d bytes (limit %d)", len(p.keys), p.maxVersion, p.bytes, a.cfg.MaxNodeBytes)
		}
	})
	t.Run("state bytes", func(t *testing.T) {
		a := newTestCore(t, "a", both(bigPackets, func(c *Config) { c.MaxStateBytes = 5 * perEntry }))
		evil := newTestCore(t, "evil", nil)
		var ds []nodeDelta
		for i := range 10 {
			ds = append(ds, nodeDelta{ID: fmt.Sprintf("n%d", i), Gen: 1, MaxVersion: 1,
				Entries: []wireEntry{{Key: "k0000", Value: value, Version: 1}}})
		}
		for _, dg := range hostileAcks(t, evil, ds) {
			if err := a.Step(t0, "addr-evil", dg); err != nil {
				t.Fatal(err)
			}
		}
		if a.stateBytes > a.cfg.MaxStateBytes {
			t.Fatalf("state of %d bytes, limit %d", a.stateBytes, a.cfg.MaxStateBytes)
		}
		if a.Stats().Refused["state_bytes"] == 0 {
			t.Fatalf("Refused = %v", a.Stats().Refused)
		}
		// The count follows removals: what a forgets is room again.
		total := 0
		for _, p := range a.peers {
			total += p.bytes
		}
		if total != a.stateBytes {
			t.Fatalf("stateBytes %d, nodes hold %d", a.stateBytes, total)
		}
	})
}

// A node's own writes past a limit fail with a LimitError and change
// nothing.
func TestLocalWriteLimit(t *testing.T) {
	a := newTestCore(t, "a", func(c *Config) { c.MaxKeysPerNode = 3 })
	mustSet(t, a, t0, "k1", "v") // with :addr, 2 keys
	mustSet(t, a, t0, "k2", "v")
	var le *LimitError
	if err := a.Set(t0, "k3", "v"); !errors.As(err, &le) || le.Limit != "keys_per_node" {
		t.Fatalf("Set past MaxKeysPerNode: %v", err)
	}
	mustSet(t, a, t0, "k2", "changed") // a key held can still change
	if _, ok := a.Lookup("a", "k3"); ok {
		t.Fatal("the refused key was set")
	}
}
