package scuttlebutt

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestThreeWayExchangeRepairsBothSides(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, a, b)
	now := t0.Add(time.Second)
	mustSet(t, a, now, "from-a", "1")
	mustSet(t, b, now, "from-b", "2")

	synAcks, acks := exchange(t, now, a, b)
	if synAcks != 1 || acks != 1 {
		t.Fatalf("exchange took %d SynAcks and %d Acks, want 1 and 1", synAcks, acks)
	}
	for _, c := range []*Core{a, b} {
		for _, owner := range []*Core{a, b} {
			want, _ := dumpOf(owner, owner.ID())
			got, _ := dumpOf(c, owner.ID())
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s's view of %s after one exchange (-want +got):\n%s", c.ID(), owner.ID(), d)
			}
		}
	}
	if v, ok := b.Lookup("a", "from-a"); !ok || v != "1" {
		t.Errorf("b: Lookup(a, from-a) = %q, %v", v, ok)
	}
	if v, ok := a.Lookup("b", "from-b"); !ok || v != "2" {
		t.Errorf("a: Lookup(b, from-b) = %q, %v", v, ok)
	}
}

// The Syn's receiver answers with its own deltas when the sender is
// behind on it, whichever side opened the exchange.
func TestSynAckCarriesResponderOwnState(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, a, b)
	mustSet(t, b, t0, "k", "v")
	replies := step(t, t0, b, a, synTo(t, a, b))
	if len(replies) != 1 {
		t.Fatalf("%d replies to a Syn", len(replies))
	}
	m := decoded(t, replies[0])
	if m.Type != msgSynAck {
		t.Fatalf("reply is a %v", m.Type)
	}
	var found bool
	for _, d := range m.Deltas {
		for _, e := range d.Entries {
			found = found || d.ID == "b" && e.Key == "k"
		}
	}
	if !found {
		t.Fatalf("b's SynAck does not carry b's new key: %+v", m.Deltas)
	}
}

// Two nodes that hold the same state exchange one datagram a round: the
// Syn, with no digest entry, and no answer. Once one changes, the Syn
// carries the change and the other asks for it.
func TestIdleExchangeIsOneShortDatagram(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, a, b)
	a.round += hotRounds + 1
	b.round += hotRounds + 1
	a.pruneRecent()
	b.pruneRecent()
	a.sendSyn(addrOf(b), false)
	syn := a.Ready().Messages[0].Data
	if m := decoded(t, syn); len(m.Digest) != 0 || len(m.Wants) != 0 {
		t.Fatalf("idle Syn carries %d entries, %d wants", len(m.Digest), len(m.Wants))
	}
	if len(syn) > 48 {
		t.Errorf("idle Syn of %d bytes", len(syn))
	}
	if replies := step(t, t0, b, a, syn); len(replies) != 0 {
		t.Fatalf("%d replies to an idle Syn", len(replies))
	}
	mustSet(t, a, t0, "k", "v")
	a.sendSyn(addrOf(b), false)
	syn = a.Ready().Messages[0].Data
	replies := step(t, t0, b, a, syn)
	if len(replies) != 1 || len(decoded(t, replies[0]).Wants) != 1 {
		t.Fatalf("b's answer to a's change: %d replies", len(replies))
	}
	for _, ack := range step(t, t0, a, b, replies[0]) {
		step(t, t0, b, a, ack)
	}
	if v, _ := b.Lookup("a", "k"); v != "v" {
		t.Fatalf("b holds a's k = %q", v)
	}
	if a.sum != b.sum || a.sum != a.recomputeSummary() || b.sum != b.recomputeSummary() {
		t.Fatalf("summaries a %x (recomputed %x), b %x (recomputed %x)", a.sum, a.recomputeSummary(), b.sum, b.recomputeSummary())
	}
}

func TestSetSameValueKeepsVersion(t *testing.T) {
	c := newTestCore(t, "a", nil)
	mustSet(t, c, t0, "k", "v")
	before := c.self.maxVersion
	mustSet(t, c, t0, "k", "v")
	if c.self.maxVersion != before {
		t.Fatalf("setting the current value bumped the version from %d to %d", before, c.self.maxVersion)
	}
	mustSet(t, c, t0, "k", "w")
	if c.self.maxVersion != before+1 {
		t.Fatalf("a new value took version %d, want %d", c.self.maxVersion, before+1)
	}
	mustDelete(t, c, t0, "k")
	v := c.self.maxVersion
	mustDelete(t, c, t0, "k")
	mustDelete(t, c, t0, "never-set")
	if c.self.maxVersion != v {
		t.Fatalf("deleting a missing key bumped the version from %d to %d", v, c.self.maxVersion)
	}
	// Setting a deleted key to "" is a change: the key comes back.
	mustSet(t, c, t0, "k", "")
	if got, ok := c.Lookup("a", "k"); !ok || got != "" {
		t.Fatalf("Lookup after re-set = %q, %v", got, ok)
	}
	checkInvariants(t, c.self)
}

func TestSetLimits(t *testing.T) {
	c := newTestCore(t, "a", nil)
	maxValue := MaxValueSize(c.cfg.MaxPacketSize)
	tests := []struct {
		name       string
		key, value string
		del        bool
		want       error // sentinel, or nil for a *SizeError check
		size       *SizeError
	}{
		{name: "empty key", key: "", value: "v", want: ErrEmptyKey},
		{name: "empty key delete", key: "", del: true, want: ErrEmptyKey},
		{name: "reserved", key: ReservedPrefix + "addr", value: "x", want: ErrReservedKey},
		{name: "reserved delete", key: ReservedPrefix + "left", del: true, want: ErrReservedKey},
		{name: "long key", key: strings.Repeat("k", MaxKeySize+1), value: "v",
			size: &SizeError{What: "key", Size: MaxKeySize + 1, Limit: MaxKeySize}},
		{name: "long key delete", key: strings.Repeat("k", MaxKeySize+1), del: true,
			size: &SizeError{What: "key", Size: MaxKeySize + 1, Limit: MaxKeySize}},
		{name: "long value", key: "k", value: strings.Repeat("v", maxValue+1),
			size: &SizeError{What: "value", Size: maxValue + 1, Limit: maxValue}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := dumpOf(c, "a")
			var err error
			if tt.del {
				err = c.Delete(t0, tt.key)
			} else {
				err = c.Set(t0, tt.key, tt.value)
			}
			switch {
			case tt.want != nil:
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			default:
				var se *SizeError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a *SizeError", err)
				}
				if *se != *tt.size {
					t.Fatalf("SizeError = %+v, want %+v", *se, *tt.size)
				}
			}
			after, _ := dumpOf(c, "a")
			if d := cmp.Diff(before, after); d != "" {
				t.Fatalf("a refused update changed the state (-before +after):\n%s", d)
			}
		})
	}
}

// A key and a value at their limits, with IDs at theirs, still travel in
// one datagram.
func TestLargestEntrySpreads(t *testing.T) {
	cluster := strings.Repeat("c", MaxIDSize)
	tune := func(c *Config) { c.ClusterID = cluster }
	a := newTestCore(t, strings.Repeat("a", MaxIDSize), tune)
	b := newTestCore(t, strings.Repeat("b", MaxIDSize), tune)
	joinCores(t, t0, a, b)
	key := strings.Repeat("k", MaxKeySize)
	value := strings.Repeat("v", MaxValueSize(a.cfg.MaxPacketSize))
	mustSet(t, a, t0, key, value)
	now := t0
	for i := 0; i < 4; i++ {
		now = now.Add(a.cfg.GossipInterval)
		exchange(t, now, a, b)
		exchange(t, now, b, a)
		if got, ok := b.Lookup(a.ID(), key); ok && got == value {
			break
		}
	}
	if got, ok := b.Lookup(a.ID(), key); !ok || got != value {
		t.Fatalf("the largest entry did not reach b (ok %v, %d bytes)", ok, len(got))
	}
	for _, c := range []*Core{a, b} {
		if n := c.Stats().Dropped["oversize_out"]; n != 0 {
			t.Errorf("%s: %d datagrams over MaxPacketSize", c.ID(), n)
		}
		if n := c.Stats().MaxPacketBytes; n > c.cfg.MaxPacketSize {
			t.Errorf("%s: sent %d bytes, MaxPacketSize is %d", c.ID(), n, c.cfg.MaxPacketSize)
		}
	}
}

func TestOtherClusterRefused(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", func(c *Config) { c.ClusterID = "other" })
	mustSet(t, b, t0, "k", "v")
	syn := synTo(t, b, a)
	before, _ := dumpOf(a, "a")
	err := a.Step(t0, addrOf(b), syn)
	if !errors.Is(err, errCluster) {
		t.Fatalf("Step of another cluster's Syn: err = %v", err)
	}
	if n := a.Stats().Dropped["other_cluster"]; n != 1 {
		t.Fatalf("Dropped[other_cluster] = %d, want 1", n)
	}
	if rd := a.Ready(); len(rd.Messages)+len(rd.Events) != 0 {
		t.Fatalf("a refused Syn produced %+v", rd)
	}
	if _, ok := a.NodeInfo("b", t0); ok {
		t.Fatal("a learnt of b from another cluster")
	}
	after, _ := dumpOf(a, "a")
	if d := cmp.Diff(before, after); d != "" {
		t.Fatalf("state changed (-before +after):\n%s", d)
	}

	full, err := b.FullState()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.StepFull(t0, full); !errors.Is(err, errCluster) {
		t.Fatalf("StepFull of another cluster's state: err = %v", err)
	}
	if n := a.Stats().Dropped["stream_other_cluster"]; n != 1 {
		t.Fatalf("Dropped[stream_other_cluster] = %d, want 1", n)
	}
	if len(a.Nodes(t0)) != 1 {
		t.Fatalf("a knows %d nodes after a refused stream", len(a.Nodes(t0)))
	}
}

// badDatagrams returns malformed datagrams, named, with the drop reason each
// must be counted under. from is a valid Syn of node "b" of the default
// cluster.
func badDatagrams(t testing.TB, syn []byte) []struct {
	name, reason string
	data         []byte
} {
	t.Helper()
	type bad = struct {
		name, reason string
		data         []byte
	}
	var out []bad
	add := func(name, reason string, data []byte) { out = append(out, bad{name, reason, data}) }
	add("empty", "malformed", nil)
	add("garbage", "malformed", []byte("GET / HTTP/1.1\r\n\r\n"))
	for n := 1; n < len(syn); n++ {
		add("truncated", "", syn[:n]) // any reason, as long as it is counted
	}
	add("trailing byte", "malformed", append(bytes.Clone(syn), 0))
	add("wrong magic", "bad_magic", rawMessage(t, 0x1234, protocolVersion, 1, "default", "b", 1))
	add("wrong version", "bad_version", rawMessage(t, magic, 99, 1, "default", "b", 1))
	// A Syn of version 2 as its nodes sent it: nine elements, a digest
	// entry with a heartbeat. Counted as another version, not misread.
	v2 := []byte{0x99, 0xcd, 0x53, 0x42, 0x02, 0x01, 0xa7, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0xa1, 'b', 0x01,
		0x91, 0x95, 0xa1, 'b', 0x01, 0x03, 0x02, 0x00, 0x90, 0x90}
	add("version 2", "bad_version", v2)
	// A Syn of version 3, the example of its docs/protocol.md byte for
	// byte: refused as another version.
	v3 := []byte{0x9a, 0xcd, 0x53, 0x42, 0x03, 0x01, 0xa7, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0xa1, 'b', 0x07,
		0xcf, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x91, 0x94, 0xa1, 'b', 0x07, 0x02, 0x00, 0x90, 0x90}
	add("version 3", "bad_version", v3)
	// Forms the document does not allow where it says uint, str or array:
	// each is malformed, never converted.
	plain := rawMessage(t, magic, protocolVersion, 1, "default", "b", 1) // ... a1 62 01 00 90 90 90
	at := func(i int, repl ...byte) []byte {
		return slices.Concat(plain[:i], repl, plain[i+1:])
	}
	gen := len(plain) - 5 // the generation, 01
	add("generation -1 (negative fixint)", "malformed", at(gen, 0xff))
	add("generation -1 (int8)", "malformed", at(gen, 0xd0, 0xff))
	add("generation as int64", "malformed", at(gen, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1))
	add("generation as float", "malformed", at(gen, 0xca, 0x3f, 0x80, 0, 0))
	add("summary nil", "malformed", at(gen+1, 0xc0))
	add("digest nil", "malformed", at(gen+2, 0xc0))
	add("deltas nil", "malformed", at(gen+4, 0xc0))
	add("digest as a map", "malformed", at(gen+2, 0x80))
	si := bytes.Index(plain, []byte("\xa1b"))
	add("sender as bin", "malformed", slices.Concat(plain[:si], []byte{0xc4, 1, 'b'}, plain[si+2:]))
	add("sender nil", "malformed", slices.Concat(plain[:si], []byte{0xc0}, plain[si+2:]))
	add("magic as int16", "bad_magic", slices.Concat(plain[:1], []byte{0xd1, 0x53, 0x42}, plain[4:]))
	add("wrong type", "bad_type", rawMessage(t, magic, protocolVersion, int(maxMsgType)+1, "default", "b", 1))
	add("full in a datagram", "bad_type", rawMessage(t, magic, protocolVersion, int(msgFull), "default", "b", 1))
	add("from self", "from_self", rawMessage(t, magic, protocolVersion, 1, "default", "a", 1))
	add("empty sender", "malformed", rawMessage(t, magic, protocolVersion, 1, "default", "", 1))
	add("too large", "too_large", append(bytes.Clone(syn), make([]byte, 2000)...))
	// Empty message arrays are the last three bytes; declare 2^32-1 digest
	// entries instead.
	empty := rawMessage(t, magic, protocolVersion, 1, "default", "b", 1)
	huge := append(bytes.Clone(empty[:len(empty)-3]), 0xdd, 0xff, 0xff, 0xff, 0xff, 0x90, 0x90)
	add("huge digest length", "malformed", huge)
	hugeDeltas := append(bytes.Clone(empty[:len(empty)-1]), 0xdd, 0xff, 0xff, 0xff, 0xf0)
	add("huge deltas length", "malformed", hugeDeltas)
	// A sender ID declared 4 GiB long.
	i := bytes.Index(empty, []byte("\xa1b"))
	hugeStr := append(append(bytes.Clone(empty[:i]), 0xdb, 0xff, 0xff, 0xff, 0xff, 'b'), empty[i+2:]...)
	add("huge string length", "malformed", hugeStr)
	// A sender ID longer than MaxIDSize.
	longID := rawMessage(t, magic, protocolVersion, 1, "default", strings.Repeat("b", MaxIDSize+1), 1)
	add("long sender ID", "malformed", longID)
	return out
}

// rawMessage encodes a message with the given header fields and empty
// arrays, bypassing the checks of message.encode.
func rawMessage(t testing.TB, mg, version, typ int, cluster, from string, gen uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	m := message{Type: msgType(typ), Cluster: cluster, From: from, Gen: gen}
	b, err := m.encode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Patch magic and version: both are the first two uints after the
	// array header, 0xcd 0x53 0x42 and 0x01.
	if b[1] != 0xcd || b[4] != protocolVersion {
		t.Fatalf("unexpected header % x", b[:5])
	}
	out := []byte{b[0], 0xcd, byte(mg >> 8), byte(mg)}
	out = append(out, byte(version)) // fixint: the tests use versions < 128
	return append(out, b[5:]...)
}

func TestBadDatagramsDroppedAndCounted(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, a, b)
	mustSet(t, a, t0, "k", "v")
	mustSet(t, b, t0, "k", "w")
	exchange(t, t0, b, a)
	syn := synTo(t, b, a)
	if err := a.Step(t0, addrOf(b), syn); err != nil {
		t.Fatalf("the valid Syn is refused: %v", err)
	}
	a.Ready()

	for _, bad := range badDatagrams(t, syn) {
		beforeA, _ := dumpOf(a, "a")
		beforeB, _ := dumpOf(a, "b")
		stats := a.Stats()
		err := a.Step(t0, addrOf(b), bad.data)
		if err == nil {
			t.Errorf("%s (% x): accepted", bad.name, bad.data)
			continue
		}
		if bad.reason != "" && dropReason(err) != bad.reason {
			t.Errorf("%s: dropped as %q (%v), want %q", bad.name, dropReason(err), err, bad.reason)
		}
		after := a.Stats()
		if got := after.Dropped[dropReason(err)] - stats.Dropped[dropReason(err)]; got != 1 {
			t.Errorf("%s: counted %d times under %q", bad.name, got, dropReason(err))
		}
		if rd := a.Ready(); len(rd.Messages)+len(rd.Events) != 0 {
			t.Errorf("%s: produced %d messages and %d events", bad.name, len(rd.Messages), len(rd.Events))
		}
		afterA, _ := dumpOf(a, "a")
		afterB, _ := dumpOf(a, "b")
		if d := cmp.Diff(beforeA, afterA) + cmp.Diff(beforeB, afterB); d != "" {
			t.Errorf("%s: state changed:\n%s", bad.name, d)
		}
		if len(a.Nodes(t0)) != 2 {
			t.Errorf("%s: a knows %d nodes", bad.name, len(a.Nodes(t0)))
		}
	}
}

func TestBadStreamsDroppedAndCounted(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	mustSet(t, b, t0, "k", "w")
	full, err := b.FullState()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"syn on a stream": synTo(t, b, a),
		"truncated":       full[:len(full)-1],
		"trailing":        append(bytes.Clone(full), 0xc0),
		"garbage":         []byte{0xff, 0xff, 0xff},
	}
	for name, data := range cases {
		if _, err := a.StepFull(t0, data); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if len(a.Nodes(t0)) != 1 {
			t.Fatalf("%s: a learnt of b", name)
		}
	}
	s := a.Stats()
	if s.Dropped["stream_bad_type"] != 1 || s.Dropped["stream_malformed"] != 3 {
		t.Fatalf("Dropped = %v", s.Dropped)
	}
	if id, err := a.StepFull(t0, full); err != nil || id != "b" {
		t.Fatalf("the valid stream: %q, %v", id, err)
	}
	if v, ok := a.Lookup("b", "k"); !ok || v != "w" {
		t.Fatalf("Lookup(b, k) = %q, %v", v, ok)
	}
}

// A node that learns from a SynAck's digest that it lacks a node asks for
// it in its next Syn.
func TestAckCarriesWantsFromSynAck(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	c := newTestCore(t, "c", nil)
	joinCores(t, t0, a, b)
	joinCores(t, t0, b, c) // a does not know c
	mustSet(t, c, t0, "k", "v")
	exchange(t, t0, c, b)
	// a's Syn does not mention c, so b's SynAck carries no delta of c, only
	// c's digest entry; a's Ack wants it, and b's last Ack carries it.
	sa := step(t, t0, b, a, synTo(t, a, b))
	if len(sa) != 1 {
		t.Fatalf("%d SynAcks", len(sa))
	}
	acks := step(t, t0, a, b, sa[0])
	if _, ok := a.NodeInfo("c", t0); ok {
		t.Skip("b's SynAck already carried c's state")
	}
	var wants []string
	for _, ack := range acks {
		for _, w := range decoded(t, ack).Wants {
			wants = append(wants, w.ID)
		}
		for _, last := range step(t, t0, b, a, ack) {
			step(t, t0, a, b, last)
		}
	}
	if !slices.Contains(wants, "c") {
		t.Fatalf("a's Ack to b wants %q, not c", wants)
	}
	if v, _ := a.Lookup("c", "k"); v != "v" {
		t.Fatalf("a holds c's k = %q after the exchange", v)
	}
}

// A restarted peer is judged by its new incarnation's history, not by the
// deadline its old one earned: heard once, then silent, it is suspected
// when the prior alone suspects it (the normal model: a heartbeat interval
// plus 5.6 deviations of a quarter of it, 1.2 s), although the old
// incarnation's irregular heartbeats had put its deadline 5.5 s after its
// last, and its suspicion is confirmed by a helper. The helper keeps
// sending heartbeats, so a is not isolated.
func TestNewGenerationJudgedAfresh(t *testing.T) {
	a := newTestCore(t, "a", nil)
	x := newTestCore(t, "x", nil)
	w := newTestCore(t, idBefore("a", "x"), nil) // so that a watches x
	joinCores(t, t0, a, x)
	joinCores(t, t0, a, w)
	now := t0
	answering := x // the old incarnation answers probes; the new one is gone
	tickA := func(until time.Time) {
		for now.Before(until) {
			now = now.Add(100 * time.Millisecond)
			a.Tick(now)
			msgs := a.Ready().Messages
			if answering != nil {
				answerProbes(t, now, a, answering, msgs)
			}
			relayHelp(t, now, a, w, msgs) // w confirms what it cannot reach
			ping(t, now, a, w)
		}
	}
	// The old incarnation beats 500 ms and 2 s apart by turns: mean
	// 1.25 s, deviation 0.75 s, deadline 5.5 s after its last beat.
	for i := range 20 {
		gap := 500 * time.Millisecond
		if i%2 == 1 {
			gap = 2 * time.Second
		}
		tickA(now.Add(gap))
		ping(t, now, a, x)
	}
	if !a.peers["x"].watched {
		t.Fatal("a does not watch x")
	}
	tickA(now.Add(500 * time.Millisecond))
	x2 := newTestCore(t, "x", func(c *Config) { c.Generation = 2 })
	joinCores(t, now, a, x2)
	answering = nil
	restarted := now
	if info, _ := a.NodeInfo("x", now); info.Generation != 2 || info.Status != StatusAlive {
		t.Fatalf("after the restart a holds x at generation %d, %v", info.Generation, info.Status)
	}
	tickA(restarted.Add(1100 * time.Millisecond))
	if info, _ := a.NodeInfo("x", now); info.Status != StatusAlive || a.peers["x"].probe != nil {
		t.Fatalf("x declared %v (suspected: %v) before the prior's bound", info.Status, a.peers["x"].probe != nil)
	}
	tickA(restarted.Add(2500 * time.Millisecond))
	if info, _ := a.NodeInfo("x", now); info.Status != StatusDead {
		t.Fatalf("x is %v 2.5 s after its new incarnation fell silent, want dead", info.Status)
	}
	if v, ok := a.self.get(keyVerdictPrefix + "x"); !ok || v != (verdict{2, a.peers["x"].maxVersion}).String() {
		t.Fatalf("a's verdict on x: %q", v)
	}
}

// idBefore returns an ID for a third node such that, on the ring of it,
// watcher and watched, watcher's predecessor is watched: watcher watches
// watched.
func idBefore(watcher, watched string) string {
	pos := func(id string) uint64 { return mix64(idHash(id)) }
	for i := 0; ; i++ {
		id := "w" + strconv.Itoa(i)
		// Forward from watched, the next of the three must be watcher.
		pw, pa, px := pos(watched), pos(watcher), pos(id)
		dist := func(from, to uint64) uint64 { return to - from } // forward, wrapping
		if dist(pw, pa) < dist(pw, px) {
			return id
		}
	}
}

// ping delivers a heartbeat of from to to.
func ping(t testing.TB, now time.Time, to, from *Core) {
	t.Helper()
	var buf bytes.Buffer
	b, err := (&message{Type: msgPing, Cluster: from.cfg.ClusterID, From: from.id, Gen: from.self.gen}).encode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := to.Step(now, addrOf(from), b); err != nil {
		t.Fatal(err)
	}
}

// A helper asked to probe a suspect nacks at once what it holds dead by a
// verdict or does not know, and probes what it holds alive, or dead only
// in its own view (it was isolated: that says nothing of the suspect).
func TestHelperNacksOnlyWhatItCannotReach(t *testing.T) {
	h := newTestCore(t, "h", nil)
	s := newTestCore(t, "s", nil)
	joinCores(t, t0, h, s)
	req := func(target string) *message {
		t.Helper()
		var buf bytes.Buffer
		b, err := (&message{Type: msgPingReq, Cluster: "default", From: "m", Summary: 77,
			Digest: []digestEntry{{ID: target, Gen: 1}}}).encode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Step(t0, "addr-m", b); err != nil {
			t.Fatal(err)
		}
		msgs := h.Ready().Messages
		if len(msgs) != 1 {
			t.Fatalf("%d datagrams for a PingReq about %s", len(msgs), target)
		}
		m := decoded(t, msgs[0].Data)
		m.Digest = []digestEntry{{ID: msgs[0].To}} // where it went
		return m
	}
	if m := req("nobody"); m.Type != msgProbeNack || m.Summary != 77 || m.Digest[0].ID != "addr-m" {
		t.Fatalf("an unknown suspect: %v %d to %s, want a nack of 77 to addr-m", m.Type, m.Summary, m.Digest[0].ID)
	}
	if m := req("s"); m.Type != msgProbe || m.Digest[0].ID != "addr-s" {
		t.Fatalf("an alive suspect: %v to %s, want a probe to addr-s", m.Type, m.Digest[0].ID)
	}
	p := h.peers["s"]
	p.deadBy = causeIsolation
	h.setStatus(t0, p, StatusDead)
	h.helping = nil
	if m := req("s"); m.Type != msgProbe {
		t.Fatalf("a suspect dead only by the helper's isolation: %v, want a probe", m.Type)
	}
	p.deadBy = causeVerdict
	h.helping = nil
	if m := req("s"); m.Type != msgProbeNack {
		t.Fatalf("a suspect dead by a verdict: %v, want a nack", m.Type)
	}
}

// An idle node sends one datagram per heartbeat interval: a Syn to its
// monitor, its successor on the ring, which the monitor takes as a
// heartbeat and answers with nothing (the summaries agree). No other
// datagram leaves it, in any round.
func TestIdleNodeSendsOneHeartbeatPerInterval(t *testing.T) {
	nodes := []*Core{newTestCore(t, "a", nil), newTestCore(t, "b", nil), newTestCore(t, "c", nil), newTestCore(t, "d", nil)}
	for _, x := range nodes[1:] {
		joinCores(t, t0, nodes[0], x)
	}
	for _, x := range nodes[1:] {
		for _, y := range nodes[1:] {
			if x != y {
				joinCores(t, t0, x, y)
			}
		}
	}
	byAddr := map[string]*Core{}
	for _, x := range nodes {
		byAddr[addrOf(x)] = x
	}
	a := nodes[0]
	now := t0
	// Let the changes of the joins go cold, then count a's datagrams over
	// 10 s (20 heartbeat intervals of 500 ms).
	var deliver func(from *Core, msgs []Outgoing)
	deliver = func(from *Core, msgs []Outgoing) {
		for _, m := range msgs {
			to := byAddr[m.To]
			if err := to.Step(now, addrOf(from), m.Data); err != nil {
				t.Fatal(err)
			}
			deliver(to, to.Ready().Messages)
		}
	}
	var sent []Outgoing
	for i := range 150 {
		now = now.Add(100 * time.Millisecond)
		for _, x := range nodes {
			x.Tick(now)
			msgs := x.Ready().Messages
			if x == a && i >= 50 {
				sent = append(sent, msgs...)
			}
			deliver(x, msgs)
		}
	}
	monitor := a.Monitors()
	if len(monitor) != 1 {
		t.Fatalf("a's monitors: %v, want one", monitor)
	}
	if len(sent) != 20 {
		t.Fatalf("a sent %d datagrams in 10 idle seconds, want 20 heartbeats", len(sent))
	}
	for _, m := range sent {
		if d := decoded(t, m.Data); d.Type != msgSyn || byAddr[m.To].ID() != monitor[0] || len(d.Digest) != 0 {
			t.Fatalf("a sent a %v with %d digest entries to %s; want idle Syns to its monitor %s", d.Type, len(d.Digest), byAddr[m.To].ID(), monitor[0])
		}
	}
	if info, _ := byAddr[addrOfID(nodes, monitor[0])].NodeInfo("a", now); info.Status != StatusAlive || now.Sub(info.LastHeard) > 600*time.Millisecond {
		t.Fatalf("a's monitor holds a %v, last heard %v ago", info.Status, now.Sub(info.LastHeard))
	}
}

// addrOfID returns the address of the core with an ID.
func addrOfID(nodes []*Core, id string) string {
	for _, x := range nodes {
		if x.ID() == id {
			return addrOf(x)
		}
	}
	return ""
}

// A node that finds in a peer's digest a life it removed answers with an
// obituary: the peer, which lagged behind and held it alive, holds it dead
// from then.
func TestObituaryTellsALaggingPeer(t *testing.T) {
	a := newTestCore(t, "a", nil)
	lag := newTestCore(t, "lag", nil)
	x := newTestCore(t, "x", nil)
	joinCores(t, t0, a, x)
	joinCores(t, t0, lag, x)
	joinCores(t, t0, a, lag)
	xv := a.peers["x"].maxVersion
	// a judged x dead and removed it; lag was away and holds it alive.
	a.removePeer("x")
	a.removed["x"] = removal{gen: 1, version: xv, until: t0.Add(time.Hour)}
	if info, _ := lag.NodeInfo("x", t0); info.Status != StatusAlive {
		t.Fatalf("lag holds x %v", info.Status)
	}
	lag.sendSyn(addrOf(a), true) // a rotation: x's entry among them
	syn := lag.Ready().Messages[0].Data
	if !slices.ContainsFunc(decoded(t, syn).Digest, func(e digestEntry) bool { return e.ID == "x" }) {
		t.Fatal("lag's rotation does not name x")
	}
	replies := step(t, t0, a, lag, syn)
	if len(replies) != 1 {
		t.Fatalf("a answered with %d datagrams", len(replies))
	}
	obit := false
	for _, d := range decoded(t, replies[0]).Deltas {
		obit = obit || d.ID == "x" && d.Dead == xv && len(d.Entries) == 0
	}
	if !obit {
		t.Fatalf("a's SynAck has no obituary of x: %+v", decoded(t, replies[0]).Deltas)
	}
	step(t, t0, lag, a, replies[0])
	if info, _ := lag.NodeInfo("x", t0); info.Status != StatusDead {
		t.Fatalf("after the obituary lag holds x %v, want dead", info.Status)
	}
	if _, ok := a.peers["x"]; ok {
		t.Fatal("the exchange brought x back at a")
	}
}
