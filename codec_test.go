package scuttlebutt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Lengths and numbers at the boundaries of msgpack's encodings.
var (
	boundaryLens = []int{0, 1, 31, 32, 255, 256, 1000}
	boundaryUint = []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
)

// randomMessage returns a message with random fields, empty slices as nil
// (as the decoder returns them). Lengths and numbers are often at encoding
// boundaries.
func randomMessage(rng *rand.Rand) *message {
	str := func(max int) string {
		n := rng.IntN(max + 1)
		if rng.IntN(2) == 0 {
			n = min(max, boundaryLens[rng.IntN(len(boundaryLens))])
		}
		return strings.Repeat(string(rune('a'+rng.IntN(26))), n)
	}
	num := func() uint64 {
		if rng.IntN(2) == 0 {
			return boundaryUint[rng.IntN(len(boundaryUint))]
		}
		return rng.Uint64() >> rng.IntN(64)
	}
	count := func() int {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return 15 + rng.IntN(3) // around the fixarray limit
		}
		return rng.IntN(5)
	}
	digest := func() []digestEntry {
		var es []digestEntry
		for range count() {
			es = append(es, digestEntry{ID: str(MaxIDSize), Gen: num(), MaxVersion: num(), LastGC: num()})
		}
		return es
	}
	m := &message{
		Type:    msgType(1 + rng.IntN(int(maxMsgType))),
		Summary: num(),
		Cluster: str(MaxIDSize),
		From:    "f" + str(MaxIDSize-1),
		Gen:     num(),
		Digest:  digest(),
		Wants:   digest(),
	}
	for range count() {
		d := nodeDelta{ID: str(MaxIDSize), Gen: num(), Reset: rng.IntN(2) == 0, FromVersion: num(), MaxVersion: num(), LastGC: num(), Dead: num()}
		for range count() {
			d.Entries = append(d.Entries, wireEntry{Key: str(MaxKeySize), Value: str(300), Version: num(), Deleted: rng.IntN(2) == 0})
		}
		m.Deltas = append(m.Deltas, d)
	}
	return m
}

func encodeMsg(t testing.TB, m *message) []byte {
	t.Helper()
	var buf bytes.Buffer
	b, err := m.encode(&buf)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

func TestSizesMatchEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := randomMessage(rng)
		b := encodeMsg(t, m)
		if m.size() != len(b) {
			t.Fatalf("message %d: size() = %d, encoded %d bytes", i, m.size(), len(b))
		}
		// Each part on its own: a message holding only it grows by its size.
		empty := message{Type: m.Type, Cluster: m.Cluster, From: m.From, Gen: m.Gen, Summary: m.Summary}
		base := len(encodeMsg(t, &empty))
		empty.Summary = math.MaxUint64 // the header size allows for the largest
		if h := messageHeaderSize(m.Type, m.Cluster, m.From, m.Gen); h != len(encodeMsg(t, &empty)) {
			t.Fatalf("messageHeaderSize = %d, an empty message with the largest summary takes %d", h, len(encodeMsg(t, &empty)))
		}
		empty.Summary = m.Summary
		for _, e := range m.Digest {
			one := empty
			one.Digest = []digestEntry{e}
			if got := len(encodeMsg(t, &one)) - base; got != e.size() {
				t.Fatalf("digest entry %+v: size() = %d, encoded %d", e, e.size(), got)
			}
		}
		for _, d := range m.Deltas {
			one := empty
			one.Deltas = []nodeDelta{d}
			if got := len(encodeMsg(t, &one)) - base; got != d.size() {
				t.Fatalf("delta %s: size() = %d, encoded %d", d.ID, d.size(), got)
			}
			entries := 0
			for _, e := range d.Entries {
				entries += e.size()
			}
			if d.headerSize()+entries != d.size() {
				t.Fatalf("delta %s: headerSize %d + entries %d != size %d", d.ID, d.headerSize(), entries, d.size())
			}
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		m := randomMessage(rng)
		b := encodeMsg(t, m)
		got, err := decodeMessage(b, len(b)+rng.IntN(2), "")
		if err != nil {
			t.Fatalf("message %d (%d bytes): %v", i, len(b), err)
		}
		if d := cmp.Diff(m, got, cmp.AllowUnexported(message{})); d != "" {
			t.Fatalf("message %d round trip (-sent +decoded):\n%s", i, d)
		}
		// The cluster check: its own passes, another is refused.
		if _, err := decodeMessage(b, len(b), m.Cluster+"x"); !errors.Is(err, errCluster) {
			t.Fatalf("message %d of cluster %q decoded for another cluster: %v", i, m.Cluster, err)
		}
		if m.Cluster != "" {
			if _, err := decodeMessage(b, len(b), m.Cluster); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		// One byte over the limit is refused before decoding.
		if _, err := decodeMessage(b, len(b)-1, ""); !errors.Is(err, errTooLarge) {
			t.Fatalf("message %d over the limit: %v", i, err)
		}
	}
}

func TestDecodeTruncatedNeverSucceeds(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 300 {
		b := encodeMsg(t, randomMessage(rng))
		for n := range len(b) {
			if len(b) > 2000 && rng.IntN(len(b)/200) != 0 && n > 100 && n < len(b)-100 {
				continue // sample the middle of long messages
			}
			if m, err := decodeMessage(b[:n], MaxPacketLimit, ""); err == nil {
				t.Fatalf("a %d-byte prefix of a %d-byte message decoded: %+v", n, len(b), m)
			}
		}
	}
}

// A peer can make the decoder allocate no more than a small multiple of
// the bytes it sent, however large the lengths it declares.
func TestDecodeAllocationBounded(t *testing.T) {
	header := rawMessage(t, magic, protocolVersion, int(msgFull), "default", "b", 1)
	header = header[:len(header)-3] // without the three empty arrays
	// Declared lengths that the bytes left could hold (n/8 elements of at
	// least 8 bytes), followed by padding.
	const n = 1 << 20
	count := uint32(n / 8)
	l := []byte{0xdd, byte(count >> 24), byte(count >> 16), byte(count >> 8), byte(count)}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := map[string][]byte{
		"digest":  cat(header, l, make([]byte, n)),
		"wants":   cat(header, []byte{0x90}, l, make([]byte, n)),
		"deltas":  cat(header, []byte{0x90, 0x90}, l, make([]byte, n)),
		"entries": cat(header, []byte{0x90, 0x90, 0x91, 0x98, 0xa1, 'x', 1, 0xc2, 0, 0, 0, 0}, l, make([]byte, n)),
	}
	for name, data := range cases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := decodeMessage(data, maxStreamSize, "")
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("%s: padding decoded", name)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*uint64(len(data)) {
			t.Errorf("%s: decoding %d bytes allocated %d bytes", name, len(data), alloc)
		}
	}
}

// manyNodes returns a full-state message from "seed" carrying count nodes
// with long IDs and a few keys each.
func manyNodes(t testing.TB, prefix string, count, keys int) []byte {
	t.Helper()
	m := message{Type: msgFull, Cluster: "default", From: prefix + "seed", Gen: 1}
	for i := range count {
		id := fmt.Sprintf("%s-%04d-%s", prefix, i, strings.Repeat("x", MaxIDSize-len(prefix)-6))
		d := nodeDelta{ID: id, Gen: uint64(1000 + i), Reset: true}
		for k := range keys {
			d.Entries = append(d.Entries, wireEntry{Key: fmt.Sprintf("key-%d", k), Value: strings.Repeat("v", 20), Version: uint64(k + 1)})
		}
		d.MaxVersion = uint64(keys)
		m.Digest = append(m.Digest, digestEntry{ID: id, Gen: d.Gen, MaxVersion: d.MaxVersion})
		m.Deltas = append(m.Deltas, d)
	}
	return encodeMsg(t, &m)
}

// Every datagram stays within MaxPacketSize, digests of a thousand nodes
// included, and two sides that each know hundreds of nodes the other does
// not converge by datagrams alone.
func TestDatagramsWithinMaxPacketSize(t *testing.T) {
	for _, size := range []int{MinPacketSize, 1400} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			tune := func(c *Config) { c.MaxPacketSize = size }
			a := newTestCore(t, "a", tune)
			b := newTestCore(t, "b", tune)
			joinCores(t, t0, a, b)
			if _, err := a.StepFull(t0, manyNodes(t, "left", 400, 3)); err != nil {
				t.Fatal(err)
			}
			if _, err := b.StepFull(t0, manyNodes(t, "right", 600, 2)); err != nil {
				t.Fatal(err)
			}
			a.Ready()
			b.Ready()
			now := t0
			var rounds int
			for rounds = 1; rounds <= 300; rounds++ {
				now = now.Add(10 * time.Millisecond)
				for _, pair := range [][2]*Core{{a, b}, {b, a}} {
					pair[0].sendSyn(addrOf(pair[1]), true)
					pair[0].pulls = pair[0].pulls[:0]
					for _, m := range pair[0].Ready().Messages {
						if len(m.Data) > size {
							t.Fatalf("round %d: %s's Syn is %d bytes", rounds, pair[0].ID(), len(m.Data))
						}
						for _, sa := range step(t, now, pair[1], pair[0], m.Data) {
							if len(sa) > size {
								t.Fatalf("round %d: %s's SynAck is %d bytes", rounds, pair[1].ID(), len(sa))
							}
							for _, ack := range step(t, now, pair[0], pair[1], sa) {
								if len(ack) > size {
									t.Fatalf("round %d: %s's Ack is %d bytes", rounds, pair[0].ID(), len(ack))
								}
								for _, last := range step(t, now, pair[1], pair[0], ack) {
									if len(last) > size {
										t.Fatalf("round %d: %s's last Ack is %d bytes", rounds, pair[1].ID(), len(last))
									}
									step(t, now, pair[0], pair[1], last)
								}
							}
						}
					}
				}
				if len(a.Nodes(now)) == 1002 && len(b.Nodes(now)) == 1002 && a.Stats().Dropped["oversize_out"] == 0 {
					break
				}
			}
			for _, c := range []*Core{a, b} {
				s := c.Stats()
				if s.Dropped["oversize_out"] != 0 || s.MaxPacketBytes > size {
					t.Fatalf("%s: %d datagrams over the limit, largest %d bytes", c.ID(), s.Dropped["oversize_out"], s.MaxPacketBytes)
				}
				if n := len(c.Nodes(now)); n != 1002 {
					t.Fatalf("%s knows %d of 1002 nodes after %d rounds", c.ID(), n, rounds)
				}
			}
			for _, id := range []string{"left-0399-" + strings.Repeat("x", MaxIDSize-10), "right-0000-" + strings.Repeat("x", MaxIDSize-11)} {
				wa, _ := dumpOf(a, id)
				wb, _ := dumpOf(b, id)
				if d := cmp.Diff(wa, wb); d != "" {
					t.Fatalf("views of %s differ (-a +b):\n%s", id, d)
				}
			}
			t.Logf("converged in %d rounds", rounds)
		})
	}
}

// The example of docs/protocol.md §3, byte for byte.
func TestProtocolDocExample(t *testing.T) {
	m := message{Type: msgSyn, Cluster: "default", From: "a", Gen: 7, Summary: 0x0123456789abcdef,
		Digest: []digestEntry{{ID: "a", Gen: 7, MaxVersion: 2}}}
	var buf bytes.Buffer
	b, err := m.encode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	const want = "9a cd 53 42 04 01 a7 64 65 66 61 75 6c 74 a1 61 07 cf 01 23 45 67 89 ab cd ef 91 94 a1 61 07 02 00 90 90"
	if got := fmt.Sprintf("% x", b); got != want {
		t.Fatalf("encoded\n%s\nwant (docs/protocol.md)\n%s", got, want)
	}
}

// The cost of encoding and decoding a full datagram (a Syn whose digest
// fills 1,400 bytes):
//
//	go test -run '^$' -bench Codec -benchmem .
func BenchmarkCodec(b *testing.B) {
	m := &message{Type: msgSyn, Cluster: "default", From: "node-1", Gen: 1700000000000000000, Summary: math.MaxUint64 / 3}
	for i := 0; m.size() < 1350; i++ {
		m.Digest = append(m.Digest, digestEntry{ID: fmt.Sprintf("node-%d", i), Gen: 1700000000000000000 + uint64(i), MaxVersion: uint64(100 + i), LastGC: 7})
	}
	var buf bytes.Buffer
	data, err := m.encode(&buf)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if _, err := m.encode(&buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeMessage(data, 1400, "default"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
