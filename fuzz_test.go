package scuttlebutt

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Fuzz tests of every decoder. The seed corpus is in testdata/fuzz/<name>/:
// valid messages of each type, truncated ones, wrong magic and version,
// huge declared lengths. Run one with
//
//	go test -run '^$' -fuzz FuzzDecodeDatagram -fuzztime 45s .

// fuzzSeeds returns datagrams and streams of a small exchange between "a"
// (the receiver in FuzzCoreStep) and "b".
func fuzzSeeds(t testing.TB) [][]byte {
	a, b := fuzzFixture(t)
	var seeds [][]byte
	syn := synTo(t, b, a)
	seeds = append(seeds, syn)
	for _, sa := range step(t, t0, a, b, syn) {
		seeds = append(seeds, sa)
		seeds = append(seeds, step(t, t0, b, a, sa)...)
	}
	full, err := b.FullState()
	if err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, full)
	for _, s := range append([][]byte(nil), seeds...) {
		seeds = append(seeds, s[:len(s)/2], s[:len(s)-1])
	}
	for _, bad := range badDatagrams(t, syn) {
		if bad.name != "truncated" && bad.name != "too large" {
			seeds = append(seeds, bad.data)
		}
	}
	return seeds
}

// fuzzFixture returns a and b, joined, each with keys, a tombstone and a
// collected tombstone.
func fuzzFixture(t testing.TB) (*Core, *Core) { return fuzzFixtureWith(t, nil) }

// fuzzFixtureWith is fuzzFixture with the cores tuned, e.g. encrypted.
func fuzzFixtureWith(t testing.TB, tune func(*Config)) (*Core, *Core) {
	all := withTTL
	if tune != nil {
		all = both(withTTL, tune)
	}
	a := newTestCore(t, "a", all)
	b := newTestCore(t, "b", all)
	joinCores(t, t0, a, b)
	for _, c := range []*Core{a, b} {
		mustSet(t, c, t0, "k1", "v1")
		mustSet(t, c, t0, "k2", "v2")
		mustDelete(t, c, t0, "k1")
		mustSet(t, c, t0, "k3", "v3")
	}
	exchange(t, t0, a, b)
	exchange(t, t0, b, a)
	now := t0.Add(ttl + time.Second)
	collectAt(a, now)
	collectAt(b, now)
	mustDelete(t, b, now, "k2")
	takeEvents(a)
	takeEvents(b)
	return a, b
}

// dumpAll is everything a core holds, comparable with cmp.
func dumpAll(c *Core) map[string]stateDump {
	out := map[string]stateDump{}
	for id := range c.peers {
		out[id], _ = dumpOf(c, id)
	}
	return out
}

func addSeeds(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
}

// checkDecoded re-encodes a decoded message and decodes it again: the
// encoder writes what the decoder read, in size() bytes.
func checkDecoded(t *testing.T, m *message, limit int) {
	var buf bytes.Buffer
	b, err := m.encode(&buf)
	if err != nil {
		t.Fatalf("re-encoding: %v", err)
	}
	if len(b) != m.size() {
		t.Fatalf("size() = %d, re-encoded %d bytes", m.size(), len(b))
	}
	if len(b) > limit {
		return // a non-canonical input can re-encode larger
	}
	again, err := decodeMessage(b, limit, "")
	if err != nil {
		t.Fatalf("re-encoded message refused: %v", err)
	}
	if d := cmp.Diff(m, again, cmp.AllowUnexported(message{})); d != "" {
		t.Fatalf("round trip (-first +second):\n%s", d)
	}
}

func FuzzDecodeDatagram(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data, 1400, "")
		if err != nil {
			if m != nil {
				t.Fatal("a message with an error")
			}
			if dropReason(err) == "" {
				t.Fatalf("no drop reason for %v", err)
			}
			return
		}
		if len(data) > 1400 || m.From == "" {
			t.Fatalf("accepted %d bytes from %q", len(data), m.From)
		}
		checkDecoded(t, m, 1400)
	})
}

func FuzzDecodeStream(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data, maxStreamSize, "default")
		if err != nil {
			return
		}
		if m.Cluster != "default" {
			t.Fatalf("accepted cluster %q", m.Cluster)
		}
		checkDecoded(t, m, maxStreamSize)
	})
}

// checkCore checks a core's invariants after any input.
func checkCore(t *testing.T, c *Core) {
	for _, p := range c.peers {
		checkInvariants(t, p)
	}
	for _, m := range c.Ready().Messages {
		if len(m.Data) > c.cfg.MaxPacketSize {
			t.Fatalf("sent %d bytes", len(m.Data))
		}
		plain, err := c.unwrap(m.Data)
		if err != nil {
			t.Fatalf("sent a datagram it cannot open: %v", err)
		}
		if _, err := decodeMessage(plain, c.cfg.MaxPacketSize, c.cfg.ClusterID); err != nil {
			t.Fatalf("sent a datagram it cannot decode: %v", err)
		}
	}
	if n := c.Stats().Dropped["oversize_out"]; n != 0 {
		t.Fatalf("%d datagrams over the limit", n)
	}
}

func FuzzCoreStep(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzStep(t, nil, data) })
}

// FuzzCoreStepEncrypted runs FuzzCoreStep's checks on the decrypting path:
// each input goes in as it is (the envelope's parser) and sealed with the
// cluster's key (the decoder behind authentication).
func FuzzCoreStepEncrypted(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzStep(t, withKeys(key1), data)
		b := newTestCore(t, "b", withKeys(key1))
		fuzzStep(t, withKeys(key1), b.wrap(data))
	})
}

func fuzzStep(t *testing.T, tune func(*Config), data []byte) {
	{
		a, _ := fuzzFixtureWith(t, tune)
		before := dumpAll(a)
		dropped := a.Stats().Dropped
		err := a.Step(t0.Add(time.Hour), "addr-b", data)
		if err != nil {
			if d := cmp.Diff(before, dumpAll(a)); d != "" {
				t.Fatalf("refused input (%v) changed the state:\n%s", err, d)
			}
			if rd := a.Ready(); len(rd.Messages)+len(rd.Events) != 0 {
				t.Fatalf("refused input (%v) produced output", err)
			}
			if after := a.Stats().Dropped; after[dropReason(err)] != dropped[dropReason(err)]+1 {
				t.Fatalf("refused input (%v) not counted: %v", err, after)
			}
			return
		}
		checkCore(t, a)
		// Whatever it took in, it still gossips within bounds.
		a.Tick(t0.Add(time.Hour))
		checkCore(t, a)
	}
}

func FuzzCoreStepFull(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzStepFull(t, nil, data) })
}

// FuzzCoreStepFullEncrypted is FuzzCoreStepFull on the decrypting path, as
// FuzzCoreStepEncrypted.
func FuzzCoreStepFullEncrypted(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzStepFull(t, withKeys(key1), data)
		b := newTestCore(t, "b", withKeys(key1))
		fuzzStepFull(t, withKeys(key1), b.wrap(data))
	})
}

func fuzzStepFull(t *testing.T, tune func(*Config), data []byte) {
	{
		a, _ := fuzzFixtureWith(t, tune)
		before := dumpAll(a)
		_, err := a.StepFull(t0.Add(time.Hour), data)
		if err != nil {
			if d := cmp.Diff(before, dumpAll(a)); d != "" {
				t.Fatalf("refused input (%v) changed the state:\n%s", err, d)
			}
			if rd := a.Ready(); len(rd.Messages)+len(rd.Events) != 0 {
				t.Fatalf("refused input (%v) produced output", err)
			}
			return
		}
		checkCore(t, a)
		a.Tick(t0.Add(time.Hour))
		checkCore(t, a)
		full, err := a.FullState()
		if err != nil {
			t.Fatalf("FullState after the stream: %v", err)
		}
		if plain, err := a.unwrap(full); err != nil {
			t.Fatalf("FullState cannot be opened: %v", err)
		} else if _, err := decodeMessage(plain, maxStreamSize, a.cfg.ClusterID); err != nil {
			t.Fatalf("FullState is not decodable: %v", err)
		}
	}
}
