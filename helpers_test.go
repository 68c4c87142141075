package scuttlebutt

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// Helpers shared by the unit tests of the pure core: cores on a fixed
// clock with fixed seeds and generations, and a hand-driven exchange of
// their datagrams.

// t0 is the virtual time at which test cores start.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// newTestCore returns a core with the local preset, a fixed seed and
// generation 1, advertising "addr-<id>".
func newTestCore(t testing.TB, id string, tune func(*Config)) *Core {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.ID = id
	cfg.Generation = 1
	cfg.RandSeed = 42
	cfg.DetectorWindow = 16
	if tune != nil {
		tune(cfg)
	}
	c, err := NewCore(cfg, "addr-"+id, t0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mustSet sets a key or fails the test.
func mustSet(t testing.TB, c *Core, now time.Time, key, value string) {
	t.Helper()
	if err := c.Set(now, key, value); err != nil {
		t.Fatalf("%s: Set(%q): %v", c.ID(), key, err)
	}
}

// mustDelete deletes a key or fails the test.
func mustDelete(t testing.TB, c *Core, now time.Time, key string) {
	t.Helper()
	if err := c.Delete(now, key); err != nil {
		t.Fatalf("%s: Delete(%q): %v", c.ID(), key, err)
	}
}

// joinCores makes a and b know each other through a full-state exchange,
// as a TCP join does, and discards what they produced.
func joinCores(t testing.TB, now time.Time, a, b *Core) {
	t.Helper()
	for _, pair := range [][2]*Core{{a, b}, {b, a}} {
		full, err := pair[0].FullState()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pair[1].StepFull(now, full); err != nil {
			t.Fatalf("%s: StepFull from %s: %v", pair[1].ID(), pair[0].ID(), err)
		}
	}
	a.Ready()
	b.Ready()
}

// addrOf returns the address a test core advertises.
func addrOf(c *Core) string { return "addr-" + c.ID() }

// synTo makes from open an exchange with to, as a round of Tick would, and
// returns the Syn datagram.
func synTo(t testing.TB, from, to *Core) []byte {
	t.Helper()
	from.sendSyn(addrOf(to), true)
	rd := from.Ready()
	if len(rd.Messages) != 1 {
		t.Fatalf("%s: %d messages for one Syn", from.ID(), len(rd.Messages))
	}
	return rd.Messages[0].Data
}

// step delivers a datagram and returns what the receiver sent back.
func step(t testing.TB, now time.Time, to *Core, from *Core, data []byte) [][]byte {
	t.Helper()
	if err := to.Step(now, addrOf(from), data); err != nil {
		t.Fatalf("%s: Step from %s: %v", to.ID(), from.ID(), err)
	}
	var out [][]byte
	rd := to.Ready()
	keptEvents[to] = append(keptEvents[to], rd.Events...)
	for _, m := range rd.Messages {
		if m.To != addrOf(from) {
			t.Fatalf("%s answered %s to %s", to.ID(), from.ID(), m.To)
		}
		out = append(out, m.Data)
	}
	return out
}

// keptEvents holds the events of the Ready calls of step, for takeEvents.
// The tests of this package do not run in parallel.
var keptEvents = map[*Core][]Event{}

// takeEvents returns c's events since the last call, those step saw
// included, and discards its datagrams.
func takeEvents(c *Core) []Event {
	ev := append(keptEvents[c], c.Ready().Events...)
	delete(keptEvents, c)
	return ev
}

// exchange runs one exchange opened by a: Syn, SynAck, Ack, and the last
// Ack that answers an Ack's wants, returning the number of SynAcks and
// Acks. Nothing answers the last Ack.
func exchange(t testing.TB, now time.Time, a, b *Core) (synAcks, acks int) {
	t.Helper()
	for _, sa := range step(t, now, b, a, synTo(t, a, b)) {
		synAcks++
		for _, ack := range step(t, now, a, b, sa) {
			acks++
			for _, last := range step(t, now, b, a, ack) {
				plain, err := a.unwrap(last)
				if err != nil {
					t.Fatal(err)
				}
				if m := decoded(t, plain); m.Type != msgAck || len(m.Wants) != 0 {
					t.Fatalf("%s answered an Ack with a %v (%d wants)", b.ID(), m.Type, len(m.Wants))
				}
				if more := step(t, now, a, b, last); len(more) != 0 {
					t.Fatalf("%s answered the last Ack", a.ID())
				}
			}
		}
	}
	return synAcks, acks
}

// decoded decodes a datagram a test core produced, or fails the test.
func decoded(t testing.TB, data []byte) *message {
	t.Helper()
	m, err := decodeMessage(data, MaxPacketLimit, "")
	if err != nil {
		t.Fatalf("decoding our own datagram: %v", err)
	}
	return m
}

// stateDump is everything a core holds of one node, comparable with cmp.
type stateDump struct {
	Gen        uint64
	MaxVersion uint64
	Entries    []string // "key=value@version", tombstones as "key!@version"
}

// dumpOf returns what c holds of node id, and whether it knows it.
func dumpOf(c *Core, id string) (stateDump, bool) {
	p := c.peers[id]
	if p == nil {
		return stateDump{}, false
	}
	d := stateDump{Gen: p.gen, MaxVersion: p.maxVersion}
	for _, e := range p.byVersion {
		if e.deleted {
			d.Entries = append(d.Entries, fmt.Sprintf("%s!@%d", e.key, e.version))
		} else {
			d.Entries = append(d.Entries, fmt.Sprintf("%s=%s@%d", e.key, e.value, e.version))
		}
	}
	return d, true
}

// checkInvariants checks the invariants of a peerState: the version index
// is sorted, unique, matches the key map, and the counts are right.
func checkInvariants(t testing.TB, p *peerState) {
	t.Helper()
	if !sort.SliceIsSorted(p.byVersion, func(i, j int) bool { return p.byVersion[i].version < p.byVersion[j].version }) {
		t.Fatalf("%s: byVersion not sorted", p.id)
	}
	if len(p.byVersion) != len(p.keys) {
		t.Fatalf("%s: %d indexed entries, %d keys", p.id, len(p.byVersion), len(p.keys))
	}
	tomb, live := 0, 0
	for i, e := range p.byVersion {
		if i > 0 && p.byVersion[i-1].version == e.version {
			t.Fatalf("%s: version %d twice", p.id, e.version)
		}
		if p.keys[e.key] != e {
			t.Fatalf("%s: key %q indexed but not current", p.id, e.key)
		}
		if e.version > p.maxVersion {
			t.Fatalf("%s: entry version %d above maxVersion %d", p.id, e.version, p.maxVersion)
		}
		switch {
		case e.deleted:
			tomb++
		case !isReserved(e.key):
			live++
		}
	}
	if tomb != p.tombstones || live != p.live {
		t.Fatalf("%s: counted %d tombstones and %d live, hold %d and %d", p.id, p.tombstones, p.live, tomb, live)
	}
}

// recomputeSummary returns the summary computed from scratch to check the one kept up to date.
func (c *Core) recomputeSummary() uint64 {
	var s uint64
	for _, p := range c.order {
		s ^= summaryTerm(idHash(p.id), p.gen, p.maxVersion)
	}
	return s
}

// relayHelp plays a helper of the suspicion protocol (probe.go) for from:
// it delivers from's PingReqs among msgs to helper, lets the helper nack
// what did not answer by now, and delivers the helper's answers to from.
// Everything else is dropped: the suspect, in particular, hears nothing.
func relayHelp(t testing.TB, now time.Time, from, helper *Core, msgs []Outgoing) {
	t.Helper()
	for _, m := range msgs {
		if m.To == addrOf(helper) && decoded(t, m.Data).Type == msgPingReq {
			if err := helper.Step(now, addrOf(from), m.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	helper.expireHelping(now)
	for _, m := range helper.Ready().Messages {
		if typ := decoded(t, m.Data).Type; m.To == addrOf(from) && (typ == msgProbeAck || typ == msgProbeNack) {
			if err := from.Step(now, addrOf(helper), m.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// answerProbes delivers from's Probes among msgs to target, and target's
// answers back to from: a suspect that is alive and reachable.
func answerProbes(t testing.TB, now time.Time, from, target *Core, msgs []Outgoing) {
	t.Helper()
	for _, m := range msgs {
		if m.To == addrOf(target) && decoded(t, m.Data).Type == msgProbe {
			for _, back := range step(t, now, target, from, m.Data) {
				if err := from.Step(now, addrOf(target), back); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
