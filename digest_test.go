package scuttlebutt

import (
	"testing"
	"time"
)

// A digest of a thousand nodes is bounded, starts with the echoed peer,
// and its rotation carries every node within a few rounds.
func TestFillDigestBoundedAndRotating(t *testing.T) {
	c := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, c, b)
	if _, err := c.StepFull(t0, manyNodes(t, "n", 1000, 1)); err != nil {
		t.Fatal(err)
	}
	c.Ready()
	total := len(c.peers)
	const budget = 1000
	seen := map[string]int{}
	rounds := 0
	for rounds < 200 && len(seen) < total {
		rounds++
		// Past hotRounds, no change is recent: pure rotation.
		c.round += hotRounds + 1
		c.pruneRecent()
		es, used := c.fillDigest(nil, budget, c.newMark(), c.peers["b"], true)
		size := 0
		for _, e := range es {
			size += e.size()
			seen[e.ID]++
		}
		if size != used || used > budget {
			t.Fatalf("round %d: %d entries of %d bytes, reported %d, budget %d", rounds, len(es), size, used, budget)
		}
		if len(es) < 2 || es[0].ID != "b" {
			t.Fatalf("round %d: digest starts %+v", rounds, es[:min(2, len(es))])
		}
	}
	big := digestEntry{ID: "n-0000-" + string(make([]byte, MaxIDSize-7)), Gen: 1999, MaxVersion: 1}
	perDigest := budget / big.size()
	if len(seen) != total || rounds > total/(perDigest-1)+2 {
		t.Fatalf("%d of %d nodes carried in %d rounds (%d entries a digest)", len(seen), total, rounds, perDigest)
	}
}

// Recently changed nodes come first, newest first; without a rotation,
// nothing else does.
func TestFillDigestRecentFirst(t *testing.T) {
	c := newTestCore(t, "a", nil)
	if _, err := c.StepFull(t0, manyNodes(t, "n", 50, 1)); err != nil {
		t.Fatal(err)
	}
	c.round += hotRounds + 1
	c.pruneRecent()
	ids := []string{c.order[40].id, c.order[7].id, c.order[23].id}
	for _, id := range ids {
		c.noteChange(id)
	}
	es, _ := c.fillDigest(nil, 1400, c.newMark(), nil, false)
	want := []string{ids[2], ids[1], ids[0]}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d", len(es), len(want))
	}
	for i, id := range want {
		if es[i].ID != id {
			t.Fatalf("entry %d is %s, want %s", i, es[i].ID, id)
		}
	}
	es, _ = c.fillDigest(nil, 1400, c.newMark(), nil, true)
	if len(es) <= len(want) || es[0].ID != ids[2] {
		t.Fatalf("with a rotation: %d entries, the first %s", len(es), es[0].ID)
	}
}

func TestCompare(t *testing.T) {
	c := newTestCore(t, "a", nil)
	mustSet(t, c, t0, "k", "v") // a at version 2
	holdNode(t, c, "n", 3, kv("k", 4, "x")...)
	c.removed["gone"] = removal{gen: 5, version: 9, until: t0.Add(time.Hour)}
	tests := []struct {
		name   string
		e      digestEntry
		send   bool
		from   uint64
		reset  bool
		unk    bool
		wanted bool
		want   digestEntry
	}{
		{name: "unknown node", e: digestEntry{ID: "x", Gen: 1, MaxVersion: 3}, wanted: true, want: digestEntry{ID: "x"}},
		{name: "newer generation", e: digestEntry{ID: "n", Gen: 4, MaxVersion: 1}, wanted: true, want: c.peers["n"].digest()},
		{name: "peer ahead", e: digestEntry{ID: "n", Gen: 3, MaxVersion: 9}, wanted: true, want: c.peers["n"].digest()},
		{name: "same", e: digestEntry{ID: "n", Gen: 3, MaxVersion: 4}},
		{name: "peer behind", e: digestEntry{ID: "n", Gen: 3, MaxVersion: 1}, send: true, from: 1},
		{name: "older generation", e: digestEntry{ID: "n", Gen: 2, MaxVersion: 9}, send: true, unk: true},
		{name: "own state behind", e: digestEntry{ID: "a", Gen: 1, MaxVersion: 1}, send: true, from: 1},
		{name: "own state same", e: digestEntry{ID: "a", Gen: 1, MaxVersion: 2}},
		{name: "own state ahead", e: digestEntry{ID: "a", Gen: 1, MaxVersion: 9}},
		// A previous life of this node with a higher generation: this
		// node takes the next one and sends its whole state (generation.go).
		{name: "own newer generation", e: digestEntry{ID: "a", Gen: 2, MaxVersion: 9}, send: true, unk: true},
		{name: "removed", e: digestEntry{ID: "gone", Gen: 5, MaxVersion: 9}},
	}
	for _, tt := range tests {
		req, send, want, wanted := c.compare(tt.e)
		if send != tt.send || wanted != tt.wanted || want != tt.want {
			t.Errorf("%s: send %v wanted %v %+v, want send %v wanted %v %+v", tt.name, send, wanted, want, tt.send, tt.wanted, tt.want)
			continue
		}
		if send && (req.from != tt.from || req.reset != tt.reset || req.unknown != tt.unk || req.p.id != tt.e.ID) {
			t.Errorf("%s: request %+v", tt.name, req)
		}
	}
	if c.Generation() != 3 {
		t.Errorf("generation %d after hearing of generation 2 of this node, want 3", c.Generation())
	}
	// A removed node back with a higher version is known again.
	if _, _, _, wanted := c.compare(digestEntry{ID: "gone", Gen: 5, MaxVersion: 10}); !wanted {
		t.Error("a removed node back with a higher version is not wanted")
	}
}
