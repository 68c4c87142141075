package tests

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

var (
	clusterKey = bytes.Repeat([]byte{0x5a}, 32)
	otherKey   = bytes.Repeat([]byte{0xa5}, 32)
	newKey     = bytes.Repeat([]byte{0x42}, 16)
)

// tap wraps a transport and keeps a copy of every byte it carries:
// datagrams both ways and both directions of every stream. It is what a
// capture of the loopback interface would see of this node.
type tap struct {
	scuttlebutt.Transport
	mu      sync.Mutex
	seen    bytes.Buffer
	packets chan scuttlebutt.Packet
	streams chan net.Conn
}

func newTap(inner scuttlebutt.Transport) *tap {
	t := &tap{Transport: inner, packets: make(chan scuttlebutt.Packet, 256), streams: make(chan net.Conn)}
	go func() {
		defer close(t.packets)
		for p := range inner.Packets() {
			t.record(p.Data)
			t.packets <- p
		}
	}()
	go func() {
		defer close(t.streams)
		for c := range inner.Streams() {
			t.streams <- &tappedConn{Conn: c, t: t}
		}
	}()
	return t
}

func (t *tap) record(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen.Write(b)
	t.seen.WriteByte(0) // no match across two messages
}

func (t *tap) WriteTo(b []byte, addr string) error {
	t.record(b)
	return t.Transport.WriteTo(b, addr)
}

func (t *tap) Packets() <-chan scuttlebutt.Packet { return t.packets }
func (t *tap) Streams() <-chan net.Conn           { return t.streams }

func (t *tap) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := t.Transport.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &tappedConn{Conn: c, t: t}, nil
}

// contains tells whether s was ever carried in clear.
func (t *tap) contains(s string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(t.seen.Bytes(), []byte(s))
}

func (t *tap) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen.Len()
}

type tappedConn struct {
	net.Conn
	t *tap
}

func (c *tappedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.t.record(b[:n])
	return n, err
}

func (c *tappedConn) Write(b []byte) (int, error) {
	c.t.record(b)
	return c.Conn.Write(b)
}

// withKey gives a node a keyring of its own holding key.
func withKey(key []byte) func(*scuttlebutt.Config) {
	return func(cfg *scuttlebutt.Config) {
		kr, err := scuttlebutt.NewKeyring(key)
		if err != nil {
			panic(err)
		}
		cfg.Keyring = kr
	}
}

// startTapped is start with a tap around the node's transport.
func startTapped(t testing.TB, id string, tune func(*scuttlebutt.Config)) (*member, *tap) {
	t.Helper()
	cfg := config(id)
	if tune != nil {
		tune(cfg)
	}
	g := newGate(t)
	tp := newTap(g)
	cfg.Transport = tp
	n, err := scuttlebutt.Create(cfg)
	if err != nil {
		g.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &member{Node: n, gate: g, cfg: cfg}, tp
}

// Three nodes with the same key converge, and nothing on the wire carries
// a key or a value in clear. Nodes with another key, or none, cannot join,
// are counted as refused, and cannot inject a key for an existing node.
func TestEncryptedClusterRefusesOutsiders(t *testing.T) {
	var ms []*member
	var taps []*tap
	for i := range 3 {
		m, tp := startTapped(t, fmt.Sprintf("node-%d", i), withKey(clusterKey))
		ms, taps = append(ms, m), append(taps, tp)
		if i > 0 {
			if err := m.Seed([]string{ms[0].Addr()}); err != nil {
				t.Fatalf("a node with the key could not join: %v", err)
			}
		}
	}
	for i, m := range ms {
		if err := m.UpdateLocal(fmt.Sprintf("secret-key-%d", i), fmt.Sprintf("secret-value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "three encrypted nodes to converge", func() bool {
		for i := range ms {
			if !agreed(ms, fmt.Sprintf("node-%d", i), fmt.Sprintf("secret-key-%d", i), fmt.Sprintf("secret-value-%d", i)) {
				return false
			}
		}
		return true
	})

	for _, tc := range []struct {
		name   string
		tune   func(*scuttlebutt.Config)
		reason string
	}{
		{"other key", withKey(otherKey), "auth_failed"},
		{"no key", nil, "plaintext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ms[0].Stats()
			out := start(t, "outsider-"+strings.ReplaceAll(tc.name, " ", "-"), tc.tune)
			if err := out.UpdateLocal("injected", "evil"); err != nil {
				t.Fatal(err)
			}
			if err := out.Seed([]string{ms[0].Addr()}); err == nil {
				t.Fatal("an outsider joined")
			}
			// Its gossip reaches the cluster's port and is refused.
			waitFor(t, 10*time.Second, "the outsider's datagrams to be refused", func() bool {
				return ms[0].Stats().Dropped[tc.reason] > before.Dropped[tc.reason]
			})
			if got := ms[0].Stats().Dropped["stream_"+tc.reason]; got <= before.Dropped["stream_"+tc.reason] {
				t.Errorf("the outsider's join stream not counted as stream_%s: %v", tc.reason, ms[0].Stats().Dropped)
			}
			for _, m := range ms {
				if _, ok := m.NodeInfo(out.ID()); ok {
					t.Fatalf("%s knows the outsider", m.ID())
				}
			}
			if len(out.Nodes()) != 1 {
				t.Fatalf("the outsider learnt of %d nodes", len(out.Nodes())-1)
			}
		})
	}

	// A forged delta for node-1, sent straight to node-0's port: in
	// plaintext, and sealed with another key.
	forger, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	to, _ := net.ResolveUDPAddr("udp", ms[0].Addr())
	gen, version, _ := nodeVersion(ms[0], "node-1")
	for _, key := range [][]byte{nil, otherKey} {
		before := ms[0].Stats().Dropped
		d := forgedAck("node-1", gen, version, "svc/web/x/80/tcp", `{"addr":"6.6.6.6:80"}`, key)
		if _, err := forger.WriteTo(d, to); err != nil {
			t.Fatal(err)
		}
		reason := "plaintext"
		if key != nil {
			reason = "auth_failed"
		}
		waitFor(t, 5*time.Second, "the forged delta to be refused", func() bool { return ms[0].Stats().Dropped[reason] > before[reason] })
	}
	if v, ok := ms[0].Lookup("node-1", "svc/web/x/80/tcp"); ok {
		t.Fatalf("a forged key was injected: %q", v)
	}

	for i, tp := range taps {
		if tp.size() == 0 {
			t.Fatal("nothing captured")
		}
		for j := range ms {
			for _, s := range []string{fmt.Sprintf("secret-key-%d", j), fmt.Sprintf("secret-value-%d", j)} {
				if tp.contains(s) {
					t.Errorf("node-%d's traffic carries %q in clear", i, s)
				}
			}
		}
	}
}

func nodeVersion(m *member, id string) (gen, version uint64, ok bool) {
	info, ok := m.NodeInfo(id)
	return info.Generation, info.Version, ok
}

// forgedAck builds, as an attacker would from docs/protocol.md, an Ack
// carrying a delta for node id at the next version, sealed with key if not
// nil (the envelope of §9, with its own AES-GCM).
func forgedAck(id string, gen, version uint64, key, value string, sealKey []byte) []byte {
	b := []byte{0x9a, 0xcd, 0x53, 0x42, 0x04, 0x03}
	b = appendStr(b, "default")
	b = appendStr(b, "forger")
	b = append(b, 0x01, 0x00, 0x90, 0x90, 0x91, 0x98)
	b = appendStr(b, id)
	b = appendUint(b, gen)
	b = append(b, 0xc2)
	b = appendUint(b, version)
	b = appendUint(b, version+1)
	b = append(b, 0x00, 0x00, 0x91, 0x94) // lastGC 0, dead 0, one entry
	b = appendStr(b, key)
	b = appendStr(b, value)
	b = appendUint(b, version+1)
	b = append(b, 0xc2)
	if sealKey == nil {
		return b
	}
	return sealEnvelope(sealKey, b, "default")
}

func appendStr(b []byte, s string) []byte {
	if len(s) < 32 {
		b = append(b, 0xa0|byte(len(s)))
	} else {
		b = append(b, 0xd9, byte(len(s)))
	}
	return append(b, s...)
}

func appendUint(b []byte, v uint64) []byte {
	b = append(b, 0xcf)
	for i := 7; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// Eight nodes rotate their key while updates flow: install the new key
// everywhere, make it primary everywhere, remove the old one. No update is
// lost, no node is declared dead, nothing is refused but what was in
// flight across a step.
func TestKeyRotationUnderTraffic(t *testing.T) {
	rec := newRecorder()
	ms := startCluster(t, 8, func(cfg *scuttlebutt.Config) {
		withKey(clusterKey)(cfg)
		cfg.NodeSubscriber = rec
	})
	waitFor(t, 10*time.Second, "8 nodes to know each other", func() bool {
		for _, m := range ms {
			if len(m.Nodes()) != 8 {
				return false
			}
		}
		return true
	})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	last := make([]atomic.Int64, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int64(1); ctx.Err() == nil; n++ {
				if err := m.UpdateLocal("counter", fmt.Sprint(n)); err != nil {
					t.Errorf("%s: %v", m.ID(), err)
					return
				}
				last[i].Store(n)
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	// seen tells whether every node holds each owner's counter at least
	// at want[owner].
	seen := func(want []int64) bool {
		for _, m := range ms {
			for i, owner := range ms {
				v, _ := m.Lookup(owner.ID(), "counter")
				var n int64
				fmt.Sscan(v, &n)
				if n < want[i] {
					return false
				}
			}
		}
		return true
	}
	// flowed waits until updates made after now reached every node: the
	// cluster gossips across the step just taken.
	flowed := func(step string) {
		want := make([]int64, len(ms))
		for i := range last {
			want[i] = last[i].Load() + 1
		}
		waitFor(t, 10*time.Second, "updates to flow after "+step, func() bool { return seen(want) })
	}
	each := func(step string, f func(*scuttlebutt.Keyring) error) {
		for _, m := range ms {
			if err := f(m.Keyring()); err != nil {
				t.Fatal(err)
			}
		}
		flowed(step)
	}
	flowed("the start")
	each("install", func(k *scuttlebutt.Keyring) error { return k.Install(newKey) })
	each("use", func(k *scuttlebutt.Keyring) error { return k.Use(newKey) })
	each("remove", func(k *scuttlebutt.Keyring) error { return k.Remove(clusterKey) })
	cancel()
	wg.Wait()

	final := make([]int64, len(ms))
	for i := range last {
		final[i] = last[i].Load()
	}
	waitFor(t, 10*time.Second, "every node's last update everywhere, after the rotation", func() bool {
		for i, owner := range ms {
			if !agreed(ms, owner.ID(), "counter", fmt.Sprint(final[i])) {
				return false
			}
		}
		return true
	})
	if n := rec.count("leave "); n != 0 {
		t.Fatalf("%d nodes declared dead or gone during the rotation", n)
	}
	for _, m := range ms {
		if got := m.Keyring().Keys(); len(got) != 1 || !bytes.Equal(got[0], newKey) {
			t.Fatalf("%s holds %d keys after the rotation", m.ID(), len(got))
		}
	}
	// From now on a node of the old key is an outsider.
	out := start(t, "old-key", withKey(clusterKey))
	if err := out.Seed([]string{ms[0].Addr()}); err == nil {
		t.Fatal("a node with the removed key joined")
	}
}

// sealEnvelope seals a message as docs/protocol.md §9 describes it, for a
// made-up session: marker, version, the key's hint, session, counter.
func sealEnvelope(key, plain []byte, cluster string) []byte {
	session := make([]byte, 8)
	if _, err := rand.Read(session); err != nil {
		panic(err)
	}
	sk, err := hkdf.Key(sha256.New, key, nil, "scuttlebutt session "+string(session), len(key))
	if err != nil {
		panic(err)
	}
	block, err := aes.NewCipher(sk)
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	counter := []byte{0, 0, 0, 0, 0, 0, 0, 1}
	sum := sha256.Sum256(append([]byte("scuttlebutt key hint "), key...))
	hint := sum[:4]
	out := append(append(append([]byte{0xc1, 0x04}, hint...), session...), counter...)
	aad := append(append([]byte("SB\x04"), hint...), cluster...)
	return gcm.Seal(out, append(make([]byte, 4), counter...), plain, aad)
}

// The forged datagrams of TestEncryptedClusterRefusesOutsiders are valid:
// a plaintext cluster takes the plaintext one, an encrypted cluster of the
// forger's key the sealed one. So their refusal there is the keys' doing.
func TestForgedDeltaTakenWithoutEncryption(t *testing.T) {
	for _, key := range [][]byte{nil, otherKey} {
		var tune func(*scuttlebutt.Config)
		if key != nil {
			tune = withKey(key)
		}
		ms := startCluster(t, 2, tune)
		waitFor(t, 10*time.Second, "two nodes to meet", func() bool { _, ok := ms[0].NodeInfo("node-01"); return ok })
		forger, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer forger.Close()
		to, _ := net.ResolveUDPAddr("udp", ms[0].Addr())
		gen, version, _ := nodeVersion(ms[0], "node-01")
		if _, err := forger.WriteTo(forgedAck("node-01", gen, version, "svc/web/x/80/tcp", "evil", key), to); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the forged key to be taken", func() bool {
			v, _ := ms[0].Lookup("node-01", "svc/web/x/80/tcp")
			return v == "evil"
		})
	}
}
