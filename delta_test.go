package scuttlebutt

import (
	"fmt"
	mrand "math/rand"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newQuickRand returns the fixed source of testing/quick's inputs, so that
// a failure replays.
func newQuickRand() *mrand.Rand { return mrand.New(mrand.NewSource(1)) }

// holdNode makes c hold node id at generation gen with the given entries
// (versions 1, 2, ... unless given), as if received from a peer.
func holdNode(t testing.TB, c *Core, id string, gen uint64, entries ...wireEntry) *peerState {
	t.Helper()
	d := nodeDelta{ID: id, Gen: gen}
	for i, e := range entries {
		if e.Version == 0 {
			e.Version = uint64(i + 1)
		}
		d.Entries = append(d.Entries, e)
		d.MaxVersion = e.Version
	}
	c.applyDelta(t0, &d)
	p := c.peers[id]
	if p == nil {
		t.Fatalf("%s does not hold %s", c.ID(), id)
	}
	return p
}

// kv returns n entries "<prefix>i" = value.
func kv(prefix string, n int, value string) []wireEntry {
	var es []wireEntry
	for i := range n {
		es = append(es, wireEntry{Key: fmt.Sprintf("%s%d", prefix, i), Value: value})
	}
	return es
}

// digestOf returns what c holds of node id as a digest entry, or a want of
// an unknown node.
func digestOf(c *Core, id string) digestEntry {
	if p := c.peers[id]; p != nil {
		return p.digest()
	}
	return digestEntry{ID: id}
}

// sendDeltas builds from's deltas of node id for to under budget, and
// applies them at to. It returns the deltas.
func sendDeltas(t testing.TB, now time.Time, from, to *Core, id string, budget int) []nodeDelta {
	t.Helper()
	req, ok := from.deltaFor(from.peers[id], digestOf(to, id))
	if !ok {
		return nil
	}
	ds, _ := from.buildDeltas([]deltaRequest{req}, budget)
	for i := range ds {
		to.applyDelta(now, &ds[i])
	}
	return ds
}

func TestBuildDeltasOrder(t *testing.T) {
	c := newTestCore(t, "s", nil)
	holdNode(t, c, "unknown", 1, kv("u", 2, "x")...)
	holdNode(t, c, "deep", 1, kv("d", 10, "x")...)
	holdNode(t, c, "tie1", 1, kv("t", 4, "x")...)
	holdNode(t, c, "tie2", 1, kv("t", 4, "x")...)
	holdNode(t, c, "older-gen", 5, kv("g", 1, "x")...)
	digest := []digestEntry{
		{ID: "tie1", Gen: 1, MaxVersion: 1},      // misses 3
		{ID: "deep", Gen: 1, MaxVersion: 1},      // misses 9
		{ID: "unknown"},                          // a want: knows nothing
		{ID: "tie2", Gen: 1, MaxVersion: 1},      // misses 3
		{ID: "older-gen", Gen: 4, MaxVersion: 9}, // holds an older generation
	}
	seen := map[string]bool{}
	for seed := range uint64(20) {
		c.rng = rand.New(rand.NewPCG(seed, 0))
		var reqs []deltaRequest
		for _, e := range digest {
			r, ok := c.deltaFor(c.peers[e.ID], e)
			if !ok {
				t.Fatalf("no delta for %+v", e)
			}
			reqs = append(reqs, r)
		}
		ds, _ := c.buildDeltas(reqs, 1<<20)
		var order []string
		for _, d := range ds {
			order = append(order, d.ID)
		}
		// Unknown nodes first (in random order), then by missing versions.
		got := strings.Join(order, " ")
		if !slices.Contains([]string{
			"unknown older-gen deep tie1 tie2",
			"unknown older-gen deep tie2 tie1",
			"older-gen unknown deep tie1 tie2",
			"older-gen unknown deep tie2 tie1",
		}, got) {
			t.Fatalf("seed %d: order %q", seed, got)
		}
		seen[got] = true
		for _, d := range ds {
			if d.ID == "older-gen" && (d.FromVersion != 0 || d.Gen != 5 || len(d.Entries) != 1) {
				t.Fatalf("delta for an older generation: %+v", d)
			}
		}
	}
	if len(seen) < 2 {
		t.Fatalf("ties always broken the same way: %v", seen)
	}
}

// checkDeltas checks the rules of buildDeltas's result for reqs (in the
// order buildDeltas sorted them) under budget.
func checkDeltas(reqs []deltaRequest, budget int, ds []nodeDelta, used int) error {
	if used > budget {
		return fmt.Errorf("used %d bytes of %d", used, budget)
	}
	sum := maxArrayHeader
	for _, d := range ds {
		sum += d.size()
	}
	if sum != used {
		return fmt.Errorf("reports %d bytes used, the deltas take %d", used, sum)
	}
	if len(ds) > len(reqs) {
		return fmt.Errorf("%d deltas for %d requests", len(ds), len(reqs))
	}
	for i, d := range ds {
		r := reqs[i] // the deltas are a prefix of the sorted requests
		p := r.p
		if d.ID != p.id || d.Gen != p.gen || d.Reset != r.reset || d.FromVersion != r.from || d.LastGC != p.lastGC {
			return fmt.Errorf("delta %d %+v for request of %s from %d", i, d, p.id, r.from)
		}
		// Everything newer than from, ascending; the delta is a prefix.
		var all []wireEntry
		for _, e := range p.byVersion {
			if e.version > r.from {
				all = append(all, wireEntry{Key: e.key, Value: e.value, Version: e.version, Deleted: e.deleted})
			}
		}
		if len(d.Entries) > len(all) || !slices.Equal(d.Entries, all[:len(d.Entries)]) {
			return fmt.Errorf("delta of %s is not a prefix of everything newer than %d", p.id, r.from)
		}
		cut := len(d.Entries) < len(all)
		switch {
		case cut && i != len(ds)-1:
			return fmt.Errorf("delta %d of %d (%s) is cut", i, len(ds), p.id)
		case cut && len(d.Entries) == 0:
			return fmt.Errorf("empty cut delta of %s", p.id)
		case cut && d.MaxVersion != d.Entries[len(d.Entries)-1].Version:
			return fmt.Errorf("cut delta of %s claims version %d, carries up to %d", p.id, d.MaxVersion, d.Entries[len(d.Entries)-1].Version)
		case !cut && d.MaxVersion != p.maxVersion:
			return fmt.Errorf("whole delta of %s claims version %d of %d", p.id, d.MaxVersion, p.maxVersion)
		}
	}
	return nil
}

// randomHolder returns a core holding nodes with random states, and random
// digests of a peer that holds less of them.
func randomHolder(t testing.TB, rng *rand.Rand) (*Core, []digestEntry) {
	c := newTestCore(t, "s", nil)
	c.rng = rand.New(rand.NewPCG(rng.Uint64(), 0))
	var digest []digestEntry
	for i := range 1 + rng.IntN(8) {
		id := fmt.Sprintf("n%d", i)
		var es []wireEntry
		for range rng.IntN(30) {
			es = append(es, wireEntry{
				Key:     fmt.Sprintf("k%d", rng.IntN(12)),
				Value:   strings.Repeat("v", rng.IntN(120)),
				Deleted: rng.IntN(5) == 0,
			})
		}
		gen := uint64(2 + rng.IntN(2))
		p := holdNode(t, c, id, gen, es...)
		if p.maxVersion == 0 || rng.IntN(6) == 0 {
			digest = append(digest, digestEntry{ID: id}) // unknown
			continue
		}
		e := digestEntry{ID: id, Gen: gen, MaxVersion: uint64(rng.IntN(int(p.maxVersion)))}
		if rng.IntN(6) == 0 {
			e.Gen, e.MaxVersion = 1, p.maxVersion+5 // older generation
		}
		digest = append(digest, e)
	}
	return c, digest
}

// The delta chosen under a budget is a prefix-consistent subset of "send
// everything newer", and within the byte bound.
func TestBuildDeltasOracle(t *testing.T) {
	f := func(seed uint64, budget uint16) bool {
		rng := rand.New(rand.NewPCG(seed, 7))
		c, digest := randomHolder(t, rng)
		var reqs []deltaRequest
		for _, e := range digest {
			if r, ok := c.deltaFor(c.peers[e.ID], e); ok {
				reqs = append(reqs, r)
			}
		}
		b := int(budget) % 3000
		ds, used := c.buildDeltas(reqs, b) // sorts reqs
		if err := checkDeltas(reqs, b, ds, used); err != nil {
			t.Logf("seed %d, budget %d: %v", seed, b, err)
			return false
		}
		// All of it fits in a budget of its exact size plus the slack of
		// the worst-case estimates.
		full, fullUsed := c.buildDeltas(slices.Clone(reqs), 1<<20)
		slack := 0
		for _, d := range full {
			slack += 9 - uintSize(d.MaxVersion) + maxArrayHeader - arrayHeaderSize(len(d.Entries))
		}
		byID := func(a, b nodeDelta) int { return strings.Compare(a.ID, b.ID) }
		all, _ := c.buildDeltas(slices.Clone(reqs), fullUsed+slack)
		slices.SortFunc(all, byID)
		slices.SortFunc(full, byID)
		if !cmp.Equal(all, full) {
			t.Logf("seed %d: %d of %d deltas in a budget of %d", seed, len(all), len(full), fullUsed+slack)
			return false
		}
		// And the message carrying it stays within header + budget.
		m := message{Type: msgAck, Cluster: "default", From: "s", Gen: 1, Deltas: ds}
		if got, max := m.size(), messageHeaderSize(msgAck, "default", "s", 1)-1+b; got > max && len(ds) > 0 {
			t.Logf("seed %d: message of %d bytes for a budget of %d", seed, got, max)
			return false
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 500, Rand: newQuickRand()}
	if err := quick.Check(f, cfg); err != nil {
		t.Fatal(err)
	}
}

func TestBuildDeltasByteBoundExact(t *testing.T) {
	c := newTestCore(t, "s", nil)
	p := holdNode(t, c, "n", 1, kv("k", 20, "0123456789")...)
	req, _ := c.deltaFor(p, digestEntry{ID: "n", Gen: 1, MaxVersion: 0})
	prev := -1
	for budget := maxArrayHeader; budget <= 600; budget++ {
		ds, used := c.buildDeltas([]deltaRequest{req}, budget)
		if err := checkDeltas([]deltaRequest{req}, budget, ds, used); err != nil {
			t.Fatalf("budget %d: %v", budget, err)
		}
		n := 0
		if len(ds) == 1 {
			n = len(ds[0].Entries)
			// Exact: one more entry would not have fitted the budget
			// (with the worst-case header the builder reserves).
			if n < 20 {
				worst := maxArrayHeader + ds[0].headerSize() - uintSize(ds[0].MaxVersion) + 9 -
					arrayHeaderSize(n) + maxArrayHeader
				next := wireEntry{Key: fmt.Sprintf("k%d", n), Value: "0123456789", Version: uint64(n + 1)}
				for _, e := range ds[0].Entries {
					worst += e.size()
				}
				if worst+next.size() <= budget {
					t.Fatalf("budget %d: cut at %d entries though the next fitted", budget, n)
				}
			}
		}
		if n < prev {
			t.Fatalf("budget %d carries %d entries, budget %d carried %d", budget, n, budget-1, prev)
		}
		prev = n
	}
	if prev != 20 {
		t.Fatalf("a budget of 600 carries %d of 20 entries", prev)
	}
}

func TestApplyDeltaIdempotent(t *testing.T) {
	s := newTestCore(t, "s", nil)
	r := newTestCore(t, "r", nil)
	mustSet(t, s, t0, "a", "1")
	mustSet(t, s, t0, "b", "2")
	mustDelete(t, s, t0, "a")
	req, _ := s.deltaFor(s.self, digestEntry{ID: "s"})
	ds, _ := s.buildDeltas([]deltaRequest{req}, 1<<20)
	r.applyDelta(t0, &ds[0])
	first, _ := dumpOf(r, "s")
	r.Ready()
	for range 3 {
		r.applyDelta(t0, &ds[0])
		// Also as an ordinary delta from version 0 of a known generation.
		d := ds[0]
		d.Reset = false
		r.applyDelta(t0, &d)
	}
	again, _ := dumpOf(r, "s")
	if d := cmp.Diff(first, again); d != "" {
		t.Fatalf("applying again changed the state (-first +again):\n%s", d)
	}
	if ev := r.Ready().Events; len(ev) != 0 {
		t.Fatalf("applying again announced %+v", ev)
	}
	want, _ := dumpOf(s, "s")
	if d := cmp.Diff(want, first); d != "" {
		t.Fatalf("(-owner +receiver):\n%s", d)
	}
	checkInvariants(t, r.peers["s"])
}

func TestApplyDeltaRejectsGaps(t *testing.T) {
	r := newTestCore(t, "r", nil)
	holdNode(t, r, "n", 1, kv("k", 2, "x")...) // versions 1, 2
	before, _ := dumpOf(r, "n")
	r.Ready()
	gap := nodeDelta{ID: "n", Gen: 1, FromVersion: 3, MaxVersion: 4,
		Entries: []wireEntry{{Key: "late", Value: "x", Version: 4}}}
	r.applyDelta(t0, &gap)
	after, _ := dumpOf(r, "n")
	if d := cmp.Diff(before, after); d != "" {
		t.Fatalf("a delta from version 3 applied to version 2 (-before +after):\n%s", d)
	}
	if r.stats.gaps != 1 {
		t.Fatalf("gaps = %d, want 1", r.stats.gaps)
	}
	// A node first heard of mid-way cannot start from a delta either.
	mid := nodeDelta{ID: "m", Gen: 1, FromVersion: 2, MaxVersion: 3,
		Entries: []wireEntry{{Key: "k", Value: "x", Version: 3}}}
	r.applyDelta(t0, &mid)
	if _, ok := r.NodeInfo("m", t0); ok {
		t.Fatal("a node was created from a delta that does not start at version 0")
	}
	// Nor can a new generation.
	newGen := gap
	newGen.Gen = 2
	r.applyDelta(t0, &newGen)
	if p := r.peers["n"]; p.gen != 1 {
		t.Fatalf("a new generation was taken from a delta from version 3")
	}
	if ev := r.Ready().Events; len(ev) != 0 {
		t.Fatalf("rejected deltas announced %+v", ev)
	}
	// The contiguous delta applies.
	ok := nodeDelta{ID: "n", Gen: 1, FromVersion: 2, MaxVersion: 4,
		Entries: []wireEntry{{Key: "k2", Value: "y", Version: 3}, {Key: "late", Value: "x", Version: 4}}}
	r.applyDelta(t0, &ok)
	if got, _ := dumpOf(r, "n"); got.MaxVersion != 4 || len(got.Entries) != 4 {
		t.Fatalf("contiguous delta: %+v", got)
	}
}

// checkHeldUpTo checks that r holds every entry of the owner's current
// state up to the version r holds, and nothing the owner does not: an
// entry r holds that differs from the owner's was overwritten after that
// version.
func checkHeldUpTo(owner, r *peerState) error {
	m := r.maxVersion
	for _, e := range owner.byVersion {
		if e.version > m {
			break
		}
		x := r.keys[e.key]
		if x == nil || x.version != e.version || x.value != e.value || x.deleted != e.deleted {
			return fmt.Errorf("holds up to %d without %s@%d (holds %+v)", m, e.key, e.version, x)
		}
	}
	for k, x := range r.keys {
		e := owner.keys[k]
		switch {
		case e == nil:
			return fmt.Errorf("holds %s@%d, which the owner does not", k, x.version)
		case e.version < x.version:
			return fmt.Errorf("holds %s@%d, newer than the owner's @%d", k, x.version, e.version)
		case e.version != x.version && e.version <= m:
			return fmt.Errorf("holds %s@%d, the owner's @%d is within its version %d", k, x.version, e.version, m)
		}
	}
	return nil
}

// Deltas cut by small budgets, in any number of steps, leave the receiver
// holding everything of the owner's up to the version it holds: never
// version v+1 without v.
func TestCutDeltasNeverSkipVersions(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 11))
		owner := newTestCore(t, "o", nil)
		r := newTestCore(t, "r", nil)
		now := t0
		for round := range 40 {
			for range rng.IntN(5) {
				key := fmt.Sprintf("k%d", rng.IntN(8))
				if rng.IntN(4) == 0 {
					if _, ok := owner.self.get(key); ok {
						mustDelete(t, owner, now, key)
					}
					continue
				}
				v := strings.Repeat(fmt.Sprint(round), rng.IntN(40))
				if old, ok := owner.self.get(key); ok && old == v {
					continue
				}
				mustSet(t, owner, now, key, v)
			}
			sendDeltas(t, now, owner, r, "o", 40+rng.IntN(200))
			if err := checkHeldUpTo(owner.self, r.peers["o"]); err != nil {
				t.Fatalf("seed %d round %d: receiver %v", seed, round, err)
			}
			checkInvariants(t, r.peers["o"])
			now = now.Add(time.Millisecond)
		}
		for range 100 {
			sendDeltas(t, now, owner, r, "o", 300)
		}
		want, _ := dumpOf(owner, "o")
		got, _ := dumpOf(r, "o")
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("seed %d: not converged (-owner +receiver):\n%s", seed, d)
		}
	}
}

func TestHigherGenerationReplacesState(t *testing.T) {
	r := newTestCore(t, "r", nil)
	holdNode(t, r, "n", 1, kv("old", 3, "x")...)
	r.Ready()
	d := nodeDelta{ID: "n", Gen: 2, MaxVersion: 1, Entries: []wireEntry{{Key: "new", Value: "y", Version: 1}}}
	r.applyDelta(t0, &d)
	got, _ := dumpOf(r, "n")
	want := stateDump{Gen: 2, MaxVersion: 1, Entries: []string{"new=y@1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after a new generation (-want +got):\n%s", diff)
	}
	var deleted, updated []string
	for _, e := range takeEvents(r) {
		switch e.Kind {
		case EventDelete:
			deleted = append(deleted, e.Key)
		case EventUpdate:
			updated = append(updated, e.Key)
		}
	}
	if !slices.Equal(deleted, []string{"old0", "old1", "old2"}) || !slices.Equal(updated, []string{"new"}) {
		t.Fatalf("announced deletes %q and updates %q", deleted, updated)
	}
	// The old generation's deltas are ignored from now on.
	old := nodeDelta{ID: "n", Gen: 1, FromVersion: 3, MaxVersion: 5,
		Entries: []wireEntry{{Key: "old0", Value: "back", Version: 4}, {Key: "zombie", Value: "z", Version: 5}}}
	r.applyDelta(t0, &old)
	old.FromVersion = 0
	r.applyDelta(t0, &old)
	if again, _ := dumpOf(r, "n"); !cmp.Equal(want, again) {
		t.Fatalf("an older generation's delta applied: %+v", again)
	}
	// And a digest of the old generation is answered with the new one.
	req, ok := r.deltaFor(r.peers["n"], digestEntry{ID: "n", Gen: 1, MaxVersion: 99})
	if !ok || !req.unknown {
		t.Fatalf("digest of an older generation: request %+v, %v", req, ok)
	}
}

// A restarted node's versions start again at 1; its peers take the new
// generation's state whole (the seed library ignored it as old).
func TestRestartedNodeIsAdopted(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", nil)
	joinCores(t, t0, a, b)
	for i := range 5 {
		mustSet(t, a, t0, fmt.Sprint("k", i), "old")
	}
	exchange(t, t0, a, b)
	if got, _ := dumpOf(b, "a"); got.MaxVersion != 6 {
		t.Fatalf("b holds a up to %d", got.MaxVersion)
	}
	now := t0.Add(time.Second)
	a2 := newTestCore(t, "a", func(c *Config) {
		c.Generation = 2
		c.InitialState = map[string]string{"fresh": "new"}
	})
	// The restarted node knows nobody: b opens the exchange with it.
	for range 3 {
		exchange(t, now, b, a2)
	}
	want, _ := dumpOf(a2, "a")
	got, _ := dumpOf(b, "a")
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("b's view of the restarted a (-want +got):\n%s", d)
	}
	if _, ok := b.Lookup("a", "k0"); ok {
		t.Fatal("the old generation's key survived")
	}
}

// ttl is the tombstone TTL of the tests of garbage collection.
const ttl = time.Minute

func withTTL(c *Config) { c.TombstoneTTL = ttl }

// collectAt ticks c at now, so that it collects tombstones, and discards
// what it sent.
func collectAt(c *Core, now time.Time) {
	c.Tick(now)
	c.Ready()
}

func TestTombstoneSpreadsAndIsCollected(t *testing.T) {
	a := newTestCore(t, "a", withTTL)
	b := newTestCore(t, "b", withTTL)
	joinCores(t, t0, a, b)
	mustSet(t, a, t0, "k", "v")
	exchange(t, t0, a, b)
	takeEvents(b)
	del := t0.Add(time.Second)
	mustDelete(t, a, del, "k")
	exchange(t, del, b, a)
	if _, ok := b.Lookup("a", "k"); ok {
		t.Fatal("the delete did not reach b")
	}
	var deleted bool
	for _, e := range takeEvents(b) {
		deleted = deleted || e.Kind == EventDelete && e.NodeID == "a" && e.Key == "k"
	}
	if !deleted {
		t.Fatal("b did not announce the delete")
	}
	version := a.self.maxVersion
	want := fmt.Sprintf("k!@%d", version)
	for _, c := range []*Core{a, b} {
		collectAt(c, del.Add(ttl/2))
		if got, _ := dumpOf(c, "a"); !slices.Contains(got.Entries, want) {
			t.Fatalf("%s: tombstone gone before its TTL: %q", c.ID(), got.Entries)
		}
	}
	for _, c := range []*Core{a, b} {
		collectAt(c, del.Add(ttl+time.Second))
		p := c.peers["a"]
		got, _ := dumpOf(c, "a")
		if slices.Contains(got.Entries, want) || p.tombstones != 0 {
			t.Fatalf("%s: tombstone kept after its TTL: %q", c.ID(), got.Entries)
		}
		if p.lastGC != version || p.maxVersion != version {
			t.Fatalf("%s: lastGC %d, maxVersion %d, want both %d", c.ID(), p.lastGC, p.maxVersion, version)
		}
		checkInvariants(t, p)
	}
}

// A peer that was away while a deleted key's tombstone was collected gets
// the owner's whole state: by deltas the key would come back (chitchat
// #110, #121). A peer that got the reset passes it on to a third.
func TestResetRepairsPeerBehindCollectedTombstones(t *testing.T) {
	a := newTestCore(t, "a", withTTL)
	b := newTestCore(t, "b", withTTL)
	c := newTestCore(t, "c", withTTL)
	joinCores(t, t0, a, b)
	joinCores(t, t0, b, c)
	mustSet(t, a, t0, "k", "doomed")
	mustSet(t, a, t0, "x", "1")
	exchange(t, t0, a, b)
	exchange(t, t0, b, c)
	if _, ok := c.Lookup("a", "k"); !ok {
		t.Fatal("setup: c does not hold k")
	}
	// b and c are away: a deletes k, the tombstone is collected.
	mustDelete(t, a, t0, "k")
	mustSet(t, a, t0, "y", "2")
	now := t0.Add(ttl + time.Second)
	collectAt(a, now)
	if a.self.lastGC == 0 {
		t.Fatal("setup: no tombstone collected")
	}
	req, ok := a.deltaFor(a.self, digestOf(b, "a"))
	if !ok || !req.reset {
		t.Fatalf("request for a peer behind lastGC %d: %+v", a.self.lastGC, req)
	}
	takeEvents(b)
	takeEvents(c)
	exchange(t, now, b, a)
	want, _ := dumpOf(a, "a")
	for _, r := range []*Core{b, c} {
		if r == c {
			exchange(t, now, c, b) // c hears only from b
		}
		got, _ := dumpOf(r, "a")
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%s's view of a (-want +got):\n%s", r.ID(), d)
		}
		if _, ok := r.Lookup("a", "k"); ok {
			t.Fatalf("%s: the deleted key came back", r.ID())
		}
		if p := r.peers["a"]; p.lastGC != a.self.lastGC {
			t.Fatalf("%s: lastGC %d, want %d", r.ID(), p.lastGC, a.self.lastGC)
		}
		var deleted bool
		for _, e := range takeEvents(r) {
			deleted = deleted || e.Kind == EventDelete && e.Key == "k"
		}
		if !deleted {
			t.Fatalf("%s did not announce the delete", r.ID())
		}
	}
}

// A peer holding exactly up to the owner's lastGC is repaired by deltas,
// not a reset (chitchat #176).
func TestNoResetAtLastGCBoundary(t *testing.T) {
	o := newTestCore(t, "o", withTTL)
	r := newTestCore(t, "r", withTTL)
	joinCores(t, t0, o, r)
	mustSet(t, o, t0, "k1", "1")
	mustSet(t, o, t0, "k2", "2")
	mustDelete(t, o, t0, "k1")
	exchange(t, t0, r, o)
	now := t0.Add(ttl + time.Second)
	collectAt(o, now)
	if o.self.lastGC != r.peers["o"].maxVersion {
		t.Fatalf("setup: lastGC %d, r holds %d", o.self.lastGC, r.peers["o"].maxVersion)
	}
	mustSet(t, o, now, "k3", "3")
	req, ok := o.deltaFor(o.self, digestOf(r, "o"))
	if !ok || req.reset || req.from != o.self.lastGC {
		t.Fatalf("request: %+v, %v", req, ok)
	}
	sendDeltas(t, now, o, r, "o", 1<<20)
	want, _ := o.State("o")
	got, _ := r.State("o")
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-owner +receiver):\n%s", d)
	}
}

// When the newest version was a collected tombstone, the reset still
// brings the receiver to the owner's maxVersion, or it would ask forever
// (chitchat #194).
func TestResetKeepsMaxVersionOfCollectedTop(t *testing.T) {
	o := newTestCore(t, "o", withTTL)
	r := newTestCore(t, "r", withTTL)
	joinCores(t, t0, o, r)
	mustSet(t, o, t0, "k", "v")
	mustDelete(t, o, t0, "k")
	now := t0.Add(ttl + time.Second)
	collectAt(o, now)
	if last := o.self.byVersion[len(o.self.byVersion)-1]; last.version == o.self.maxVersion {
		t.Fatal("setup: the newest version is still held")
	}
	ds := sendDeltas(t, now, o, r, "o", 1<<20)
	if len(ds) != 1 || !ds[0].Reset {
		t.Fatalf("deltas %+v, want one reset", ds)
	}
	if got, want := r.peers["o"].digest(), o.self.digest(); got.MaxVersion != want.MaxVersion || got.LastGC != want.LastGC {
		t.Fatalf("receiver's digest %+v, owner's %+v", got, want)
	}
	if _, ok := o.deltaFor(o.self, digestOf(r, "o")); ok {
		t.Fatal("the owner still has something to send")
	}
}

// lexLess reports whether (gc1, v1) < (gc2, v2): a reset raises lastGC and
// may lower maxVersion (a reset cut by the budget); nothing else may lower
// either (chitchat #178, #194).
func lexLess(gc1, v1, gc2, v2 uint64) bool { return gc1 < gc2 || gc1 == gc2 && v1 < v2 }

// A reset computed from an old digest arrives after the receiver caught up
// through another peer, and a normal delta computed before a reset arrives
// after it: neither moves the receiver back.
func TestStaleResetsAndDeltasDoNotGoBack(t *testing.T) {
	o := newTestCore(t, "o", withTTL)
	s2 := newTestCore(t, "s2", withTTL)
	r := newTestCore(t, "r", withTTL)
	joinCores(t, t0, o, s2)
	joinCores(t, t0, o, r) // r holds o at version 1
	for i := range 5 {
		mustSet(t, o, t0, fmt.Sprint("k", i), "v")
	}
	mustDelete(t, o, t0, "k1")
	mustDelete(t, o, t0, "k2")
	mustSet(t, o, t0, "k5", "v")
	exchange(t, t0, s2, o) // s2 holds it all, tombstones included
	now := t0.Add(ttl + time.Second)
	collectAt(o, now)
	oldDigest := digestOf(r, "o")

	// 1. A reset from the old digest, delivered after r caught up from s2.
	req, _ := o.deltaFor(o.self, oldDigest)
	if !req.reset {
		t.Fatalf("setup: %+v is not a reset", req)
	}
	staleReset, _ := o.buildDeltas([]deltaRequest{req}, 1<<20)
	stale2, _ := s2.buildDeltas([]deltaRequest{func() deltaRequest { q, _ := s2.deltaFor(s2.peers["o"], oldDigest); return q }()}, 1<<20)
	for i := range stale2 {
		r.applyDelta(now, &stale2[i])
	}
	before, _ := dumpOf(r, "o")
	gc, v := r.peers["o"].lastGC, r.peers["o"].maxVersion
	r.applyDelta(now, &staleReset[0])
	after, _ := dumpOf(r, "o")
	if d := cmp.Diff(before, after); d != "" {
		t.Fatalf("a stale reset changed the state (-before +after):\n%s", d)
	}
	if p := r.peers["o"]; lexLess(p.lastGC, p.maxVersion, gc, v) {
		t.Fatalf("went back from (%d, %d) to (%d, %d)", gc, v, p.lastGC, p.maxVersion)
	}

	// 2. The reset first, then s2's normal delta from the old digest.
	r2 := newTestCore(t, "r2", withTTL)
	holdNode(t, r2, "o", 1, wireEntry{Key: keyAddr, Value: "addr-o", Version: 1})
	r2.applyDelta(now, &staleReset[0])
	want, _ := dumpOf(o, "o")
	before, _ = dumpOf(r2, "o")
	if d := cmp.Diff(want, before); d != "" {
		t.Fatalf("reset (-owner +receiver):\n%s", d)
	}
	for i := range stale2 {
		r2.applyDelta(now, &stale2[i])
	}
	if after, _ := dumpOf(r2, "o"); !cmp.Equal(before, after) {
		t.Fatalf("a stale delta after a reset changed the state:\n%s", cmp.Diff(before, after))
	}

	// 3. Resets cut by the budget: (lastGC, maxVersion) only grows, and the
	// receiver ends with the owner's state.
	for budget := 40; budget < 120; budget += 7 {
		r3 := newTestCore(t, "r3", withTTL)
		holdNode(t, r3, "o", 1, kv("k", 3, "old")...)
		for step := 0; ; step++ {
			p := r3.peers["o"]
			gc, v := p.lastGC, p.maxVersion
			if len(sendDeltas(t, now, o, r3, "o", budget)) == 0 {
				break
			}
			if lexLess(p.lastGC, p.maxVersion, gc, v) {
				t.Fatalf("budget %d step %d: went back from (%d, %d) to (%d, %d)", budget, step, gc, v, p.lastGC, p.maxVersion)
			}
			if err := checkHeldUpTo(o.self, p); err != nil {
				t.Fatalf("budget %d step %d: %v", budget, step, err)
			}
			if step > 50 {
				t.Fatalf("budget %d: no end", budget)
			}
		}
		got, _ := dumpOf(r3, "o")
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("budget %d (-owner +receiver):\n%s", budget, d)
		}
	}
}

// A removed node is remembered by (generation, version): a delta of the
// same incarnation at a version no higher is a lagging peer's copy and is
// ignored; the same generation at a higher version (the node refuted its
// death) or a higher generation is the node really back, as for a digest
// entry (docs/protocol.md §6 and §7 agree).
func TestRemovedNodeBackOnlyWithNewerState(t *testing.T) {
	a := newTestCore(t, "a", nil)
	a.removed["x"] = removal{gen: 3, version: 5, until: t0.Add(time.Hour)}
	delta := func(gen, version uint64) *nodeDelta {
		d := &nodeDelta{ID: "x", Gen: gen, MaxVersion: version}
		for v := uint64(1); v <= version; v++ {
			d.Entries = append(d.Entries, wireEntry{Key: fmt.Sprint("k", v), Value: "v", Version: v})
		}
		return d
	}
	for _, old := range []*nodeDelta{delta(3, 5), delta(3, 4), delta(2, 9)} {
		a.applyDelta(t0, old)
		if _, ok := a.NodeInfo("x", t0); ok {
			t.Fatalf("a delta of generation %d version %d brought the removed x back", old.Gen, old.MaxVersion)
		}
	}
	if a.isRemoved(digestEntry{ID: "x", Gen: 3, MaxVersion: 5}) != true {
		t.Fatal("the removal was forgotten by the refused deltas")
	}
	a.applyDelta(t0, delta(3, 6))
	if info, ok := a.NodeInfo("x", t0); !ok || info.Status != StatusAlive || info.Version != 6 {
		t.Fatalf("x at generation 3 version 6 after its removal at version 5: %+v, %v", info, ok)
	}
}

// A node that asked for X when it did not know it (a want of generation
// 0) may learn X meanwhile, from another peer, at an old version; the
// answer to its want then carries all of X from version 0, without the
// tombstones the owner collected since. Applied on top of the old copy, it
// kept a deleted key at the owner's version (seen by the convergence
// property at 13 seeds in 1,000): a whole state newer than the copy's
// possible tombstones replaces it.
func TestWholeStateReplacesAnOldCopy(t *testing.T) {
	a := newTestCore(t, "a", nil)
	old := &nodeDelta{ID: "x", Gen: 1, MaxVersion: 3, Entries: []wireEntry{
		{Key: ":addr", Value: "addr-x", Version: 1},
		{Key: "gone", Value: "v", Version: 2},
		{Key: "kept", Value: "v", Version: 3},
	}}
	a.applyDelta(t0, old)
	// The owner deleted "gone" at version 4 and collected the tombstone
	// (lastGC 4); the whole state it now sends has no trace of it.
	whole := &nodeDelta{ID: "x", Gen: 1, MaxVersion: 6, LastGC: 4, Entries: []wireEntry{
		{Key: ":addr", Value: "addr-x", Version: 1},
		{Key: "kept", Value: "v", Version: 3},
		{Key: "new", Value: "w", Version: 6},
	}}
	a.applyDelta(t0, whole)
	got, _ := a.State("x")
	if _, ok := got["gone"]; ok || got["new"] != "w" || got["kept"] != "v" {
		t.Fatalf("x's state after a whole state at version 6 with lastGC 4: %v", got)
	}
	if _, v, _ := a.Version("x"); v != 6 {
		t.Fatalf("x at version %d, want 6", v)
	}
	checkInvariants(t, a.peers["x"])
}
