package scuttlebutt

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// setBacklog sets n new keys of the largest value on c.
func setBacklog(t *testing.T, c *Core, now time.Time, n int) {
	t.Helper()
	value := strings.Repeat("v", MaxValueSize(c.cfg.MaxPacketSize))
	for range n {
		mustSet(t, c, now, fmt.Sprintf("k%05d", c.self.maxVersion), value)
	}
}

// synCatchUps delivers a Syn of from to to at now, and returns the
// catch-ups to answered with.
func synCatchUps(t *testing.T, now time.Time, to, from *Core) []CatchUp {
	t.Helper()
	if err := to.Step(now, addrOf(from), synTo(t, from, to)); err != nil {
		t.Fatal(err)
	}
	return to.Ready().CatchUps
}

// A node that finds a peer lacks more than a few datagrams' worth of its
// state asks for a stream to it, once at a time and at most once per
// catchUpInterval; the stream's message brings the peer up to date as a
// join's would; a small difference goes by datagrams only.
func TestCatchUpDecision(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, a, b)

	// A few datagrams' worth: datagrams only.
	setBacklog(t, a, t0, catchUpDatagrams-1)
	if cu := synCatchUps(t, t0, a, b); len(cu) != 0 {
		t.Fatalf("a stream for %d entries: %v", catchUpDatagrams-1, cu)
	}

	setBacklog(t, a, t0, 50)
	now := t0.Add(time.Millisecond)
	cu := synCatchUps(t, now, a, b)
	if len(cu) != 1 || cu[0].Peer != "b" || cu[0].To != addrOf(b) {
		t.Fatalf("catch-ups for b 50 entries behind: %+v", cu)
	}
	if m := decoded(t, cu[0].Data); m.Type != msgCatchUp || len(m.Deltas) != 1 || m.Deltas[0].MaxVersion != a.self.maxVersion {
		t.Fatalf("catch-up message: %v with %d deltas", m.Type, len(m.Deltas))
	}
	if got := a.Stats().CatchUpsOut; got != 1 {
		t.Fatalf("CatchUpsOut = %d", got)
	}

	// One at a time, then not before the interval since its end.
	if more := synCatchUps(t, now.Add(2*a.catchUpInterval()), a, b); len(more) != 0 {
		t.Fatal("a second stream to b while the first is in flight")
	}
	done := now.Add(3 * a.catchUpInterval())
	a.CatchUpDone("b", done)
	if more := synCatchUps(t, done.Add(a.catchUpInterval()-time.Millisecond), a, b); len(more) != 0 {
		t.Fatal("a stream to b within catchUpInterval of the last")
	}
	again := done.Add(a.catchUpInterval())
	if more := synCatchUps(t, again, a, b); len(more) != 1 {
		t.Fatal("no stream to b still behind after catchUpInterval")
	}
	a.CatchUpDone("b", again)
	// b is still behind (the streams were not delivered): a backs off,
	// twice the interval now.
	if more := synCatchUps(t, again.Add(a.catchUpInterval()), a, b); len(more) != 0 {
		t.Fatal("no backoff for a peer still far behind after a catch-up")
	}
	again = again.Add(2 * a.catchUpInterval())
	if more := synCatchUps(t, again, a, b); len(more) != 1 {
		t.Fatal("no stream to b after twice the interval")
	}
	a.CatchUpDone("b", again)

	// The receiver applies it as a join's state, and answers it with an
	// empty frame (full is false).
	from, full, err := b.StepStream(again, cu[0].Data)
	if err != nil || from != "a" || full {
		t.Fatalf("StepStream = %q, %v, %v", from, full, err)
	}
	if _, v, _ := b.Version("a"); v != a.self.maxVersion {
		t.Fatalf("b holds a at version %d, a is at %d", v, a.self.maxVersion)
	}
	if got := b.Stats().CatchUpsIn; got != 1 {
		t.Fatalf("CatchUpsIn = %d", got)
	}
	if more := synCatchUps(t, again.Add(a.catchUpInterval()), a, b); len(more) != 0 {
		t.Fatal("a stream to b caught up")
	}
	// Caught up, b is back to the first interval for its next backlog.
	setBacklog(t, a, t0, 50)
	if more := synCatchUps(t, again.Add(a.catchUpInterval()), a, b); len(more) != 1 {
		t.Fatal("the backoff outlived the catch-up")
	}
}

// At most maxCatchUps streams are in flight from a node, whoever is
// behind.
func TestCatchUpsBounded(t *testing.T) {
	a := newTestCore(t, "a", nil)
	var peers []*Core
	for i := range maxCatchUps + 2 {
		p := newTestCore(t, fmt.Sprintf("p%d", i), nil)
		joinCores(t, t0, a, p)
		peers = append(peers, p)
	}
	setBacklog(t, a, t0, 20)
	n := 0
	for _, p := range peers {
		n += len(synCatchUps(t, t0, a, p))
	}
	if n != maxCatchUps {
		t.Fatalf("%d streams in flight, want %d", n, maxCatchUps)
	}
	a.CatchUpDone(peers[0].ID(), t0)
	if cu := synCatchUps(t, t0, a, peers[len(peers)-1]); len(cu) != 1 {
		t.Fatalf("no stream to a peer never served once one ended: %d", len(cu))
	}
}

// A CatchUp is a stream's message: refused in a datagram, as a Full is;
// StepFull takes only a Full; a CatchUp of another key is refused and
// counted.
func TestCatchUpOnlyOnStreams(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, a, b)
	setBacklog(t, a, t0, 10)
	cu := synCatchUps(t, t0, a, b)
	if len(cu) != 1 {
		t.Fatalf("%d catch-ups", len(cu))
	}
	small := message{Type: msgCatchUp, Cluster: a.cfg.ClusterID, From: "a", Gen: 1,
		Deltas: []nodeDelta{{ID: "a", Gen: 1, FromVersion: 1, MaxVersion: 2, Entries: []wireEntry{{Key: "x", Value: "y", Version: 2}}}}}
	var buf bytes.Buffer
	dgram, err := small.encode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Step(t0, addrOf(a), dgram); err == nil || b.Stats().Dropped["bad_type"] != 1 {
		t.Fatalf("a CatchUp in a datagram: %v, dropped %v", err, b.Stats().Dropped)
	}
	if _, err := b.StepFull(t0, cu[0].Data); err == nil {
		t.Fatal("StepFull took a CatchUp")
	}
	if _, _, err := b.StepStream(t0, synTo(t, a, b)); err == nil || b.Stats().Dropped["stream_bad_type"] != 2 {
		t.Fatalf("a Syn on a stream: %v, dropped %v", err, b.Stats().Dropped)
	}
	if _, v, _ := b.Version("a"); v >= a.self.maxVersion {
		t.Fatalf("b took a refused message: version %d", v)
	}
}

// The CatchUp example of docs/protocol.md §9, byte for byte, both ways.
func TestProtocolDocCatchUpExample(t *testing.T) {
	m := message{Type: msgCatchUp, Cluster: "default", From: "a", Gen: 7,
		Deltas: []nodeDelta{{ID: "a", Gen: 7, FromVersion: 2, MaxVersion: 3, Entries: []wireEntry{{Key: "k", Value: "v", Version: 3}}}}}
	var buf bytes.Buffer
	b, err := m.encode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	const want = "9a cd 53 42 04 0a a7 64 65 66 61 75 6c 74 a1 61 07 00 90 90 91 98 a1 61 07 c2 02 03 00 00 91 94 a1 6b a1 76 03 c2"
	if got := fmt.Sprintf("% x", b); got != want {
		t.Fatalf("encoded\n%s\nwant (docs/protocol.md)\n%s", got, want)
	}
	b2 := newTestCore(t, "b", func(c *Config) { c.ClusterID = "default" })
	a := newTestCore(t, "a", func(c *Config) { c.ClusterID = "default"; c.Generation = 7 })
	mustSet(t, a, t0, "j", "w")
	joinCores(t, t0, a, b2)                 // b holds a at version 2 (its :addr and j)
	from, full, err := b2.StepStream(t0, b) // the example, as a stream's frame body
	if err != nil || from != "a" || full {
		t.Fatalf("StepStream = %q, %v, %v", from, full, err)
	}
	if v, ok := b2.Lookup("a", "k"); !ok || v != "v" {
		t.Fatalf("Lookup(a, k) = %q, %v", v, ok)
	}
}

// A Syn from a peer this node holds dead by a verdict (a partition
// healing, or a peer convicted in error) gets that peer everything this
// node holds over a catch-up stream, though the exchange itself shows
// no difference; a peer held alive gets none.
func TestWholeStateToAPeerHeldDead(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	c := newTestCore(t, "c", nil)
	joinCores(t, t0, a, b)
	joinCores(t, t0, a, c)
	if cu := synCatchUps(t, t0, a, b); len(cu) != 0 {
		t.Fatalf("a stream to b, held alive: %+v", cu)
	}
	a.applyVerdict(t0, "b", verdict{gen: b.self.gen, version: b.self.maxVersion})
	if info, _ := a.NodeInfo("b", t0); info.Status != StatusDead {
		t.Fatalf("a holds b %v", info.Status)
	}
	cu := synCatchUps(t, t0.Add(time.Millisecond), a, b)
	if len(cu) != 1 || cu[0].Peer != "b" {
		t.Fatalf("catch-ups to b, held dead by a verdict: %+v", cu)
	}
	got := map[string]bool{}
	for _, d := range decoded(t, cu[0].Data).Deltas {
		got[d.ID] = d.FromVersion == 0
	}
	if !got["a"] || !got["b"] || !got["c"] {
		t.Fatalf("the stream carries %v, want every node from version 0", got)
	}
}
