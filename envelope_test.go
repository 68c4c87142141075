package scuttlebutt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Keys of the tests: two 32-byte keys and one of 16.
var (
	key1 = bytes.Repeat([]byte{1}, 32)
	key2 = bytes.Repeat([]byte{2}, 32)
	key3 = bytes.Repeat([]byte{3}, 16)
)

// withKeys gives a test core a keyring of keys, the first primary.
func withKeys(keys ...[]byte) func(*Config) {
	return func(c *Config) {
		kr, err := NewKeyring(keys[0], keys[1:]...)
		if err != nil {
			panic(err)
		}
		c.Keyring = kr
	}
}

func both(fs ...func(*Config)) func(*Config) {
	return func(c *Config) {
		for _, f := range fs {
			f(c)
		}
	}
}

// The envelope is as docs/protocol.md §9 says, checked as a second
// implementation would read it: marker, version, key hint, session,
// counter, AES-GCM under HKDF-SHA256(key, info "scuttlebutt session " +
// session) with the nonce 0000 + counter, "SB", version, hint and cluster
// ID as additional data.
func TestEnvelopeFormat(t *testing.T) {
	a := newTestCore(t, "a", withKeys(key1))
	plainCore := newTestCore(t, "a", nil)
	mustSet(t, a, t0, "k", "v")
	mustSet(t, plainCore, t0, "k", "v")
	sealed := synTo(t, a, plainCore)
	plain := synTo(t, plainCore, a)

	if sealed[0] != 0xc1 || sealed[1] != 4 {
		t.Fatalf("envelope opens with % x, want c1 04", sealed[:2])
	}
	if len(sealed) != len(plain)+38 {
		t.Fatalf("envelope of %d bytes for a message of %d, want +38", len(sealed), len(plain))
	}
	hint := sha256.Sum256(append([]byte("scuttlebutt key hint "), key1...))
	if !bytes.Equal(sealed[2:6], hint[:4]) {
		t.Fatalf("hint % x, want % x", sealed[2:6], hint[:4])
	}
	session, counter := sealed[6:14], sealed[14:22]
	sk, err := hkdf.Key(sha256.New, key1, nil, "scuttlebutt session "+string(session), 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(sk)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := append(make([]byte, 4), counter...)
	aad := append(append([]byte("SB\x04"), hint[:4]...), "default"...)
	got, err := gcm.Open(nil, nonce, sealed[22:], aad)
	if err != nil {
		t.Fatalf("a second implementation cannot open the envelope: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("plaintext\n% x\nwant\n% x", got, plain)
	}
	// The next envelope: the same session, the next counter.
	again := synTo(t, a, plainCore)
	if !bytes.Equal(again[6:14], session) || binary.BigEndian.Uint64(again[14:22]) != binary.BigEndian.Uint64(counter)+1 {
		t.Fatalf("second envelope: session % x counter % x, after % x % x", again[6:14], again[14:22], session, counter)
	}
	// Another node (another keyring) has another session.
	b := newTestCore(t, "b", withKeys(key1))
	if other := synTo(t, b, plainCore); bytes.Equal(other[6:14], session) {
		t.Fatal("two keyrings share a session")
	}
}

// Two nodes with the same key converge; nothing they send carries a key or
// a value in clear, and no datagram is over MaxPacketSize, even with the
// largest entry.
func TestEncryptedCoresConverge(t *testing.T) {
	cluster := strings.Repeat("c", MaxIDSize)
	tune := both(withKeys(key1), func(c *Config) { c.ClusterID = cluster })
	a := newTestCore(t, strings.Repeat("a", MaxIDSize), tune)
	b := newTestCore(t, strings.Repeat("b", MaxIDSize), tune)
	joinCores(t, t0, a, b)
	key := "secret-key-" + strings.Repeat("k", MaxKeySize-11)
	value := "secret-value-" + strings.Repeat("v", MaxValueSize(a.cfg.MaxPacketSize)-13)
	mustSet(t, a, t0, key, value)
	mustSet(t, b, t0, "other-secret", "hidden-value")
	var wire [][]byte
	now := t0
	for range 4 {
		now = now.Add(a.cfg.GossipInterval)
		for _, pair := range [][2]*Core{{a, b}, {b, a}} {
			syn := synTo(t, pair[0], pair[1])
			wire = append(wire, syn)
			for _, sa := range step(t, now, pair[1], pair[0], syn) {
				wire = append(wire, sa)
				for _, ack := range step(t, now, pair[0], pair[1], sa) {
					wire = append(wire, ack)
					step(t, now, pair[1], pair[0], ack)
				}
			}
		}
	}
	if got, _ := b.Lookup(a.ID(), key); got != value {
		t.Fatalf("the largest entry did not reach b (%d bytes)", len(got))
	}
	if got, _ := a.Lookup(b.ID(), "other-secret"); got != "hidden-value" {
		t.Fatalf("b's key did not reach a: %q", got)
	}
	full, err := a.FullState()
	if err != nil {
		t.Fatal(err)
	}
	wire = append(wire, full)
	for _, d := range wire {
		for _, secret := range []string{"secret-key", "secret-value", "other-secret", "hidden-value", cluster} {
			if bytes.Contains(d, []byte(secret)) {
				t.Fatalf("%q in clear on the wire", secret)
			}
		}
	}
	for _, c := range []*Core{a, b} {
		if n := c.Stats().MaxPacketBytes; n > c.cfg.MaxPacketSize {
			t.Errorf("%s: sent %d bytes, MaxPacketSize is %d", c.ID(), n, c.cfg.MaxPacketSize)
		}
		if n := c.Stats().Dropped["oversize_out"]; n != 0 {
			t.Errorf("%s: %d datagrams over the budget", c.ID(), n)
		}
	}
}

// refusedByA checks that a refuses data from b, counted under reason, with
// no state change and no output.
func refusedByA(t *testing.T, a *Core, data []byte, reason string, stream bool) {
	t.Helper()
	before := dumpAll(a)
	var err error
	if stream {
		_, err = a.StepFull(t0, data)
		reason = "stream_" + reason
	} else {
		err = a.Step(t0, "addr-b", data)
	}
	if err == nil {
		t.Fatalf("accepted; want refused as %s", reason)
	}
	if got := dropReason(err); "stream_"+got != reason && got != reason {
		t.Fatalf("refused as %s (%v), want %s", got, err, reason)
	}
	if n := a.Stats().Dropped[reason]; n == 0 {
		t.Fatalf("Dropped[%s] = 0 after a refusal", reason)
	}
	if d := cmp.Diff(before, dumpAll(a)); d != "" {
		t.Fatalf("refused input changed the state:\n%s", d)
	}
	if rd := a.Ready(); len(rd.Messages)+len(rd.Events) != 0 {
		t.Fatalf("refused input produced %+v", rd)
	}
}

// A node with another key, or none, is refused before any decoding: it
// cannot join, cannot read, cannot inject a key for an existing node.
func TestOtherKeyOrNoKeyRefused(t *testing.T) {
	a := newTestCore(t, "a", withKeys(key1))
	c := newTestCore(t, "c", withKeys(key1))
	joinCores(t, t0, a, c)
	for _, tc := range []struct {
		name   string
		tune   func(*Config)
		reason string
	}{
		{"other key", withKeys(key2), "auth_failed"},
		{"no key", nil, "plaintext"},
		{"other cluster, same key", both(withKeys(key1), func(c *Config) { c.ClusterID = "other" }), "auth_failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestCore(t, "b", tc.tune)
			mustSet(t, b, t0, "k", "v")
			refusedByA(t, a, synTo(t, b, a), tc.reason, false)
			full, err := b.FullState()
			if err != nil {
				t.Fatal(err)
			}
			refusedByA(t, a, full, tc.reason, true)
			// A forged delta for c, an existing node, at a higher version.
			forged := message{Type: msgAck, Cluster: b.cfg.ClusterID, From: "b", Gen: 1,
				Deltas: []nodeDelta{{ID: "c", Gen: 1, FromVersion: 1, MaxVersion: 9,
					Entries: []wireEntry{{Key: "svc/web", Value: "evil:80", Version: 9}}}}}
			var buf bytes.Buffer
			plain, err := forged.encode(&buf)
			if err != nil {
				t.Fatal(err)
			}
			refusedByA(t, a, b.wrap(plain), tc.reason, false)
			if _, ok := a.Lookup("c", "svc/web"); ok {
				t.Fatal("a forged key was injected")
			}
		})
	}
}

// A node without a keyring refuses envelopes, counted as "encrypted".
func TestEnvelopeRefusedWithoutKeyring(t *testing.T) {
	a := newTestCore(t, "a", nil)
	b := newTestCore(t, "b", withKeys(key1))
	refusedByA(t, a, synTo(t, b, a), "encrypted", false)
}

// One bit flipped anywhere in an envelope, datagram or stream, and it is
// refused.
func TestTamperedEnvelopeRefused(t *testing.T) {
	a := newTestCore(t, "a", withKeys(key1))
	b := newTestCore(t, "b", withKeys(key1))
	mustSet(t, b, t0, "k", "v")
	full, err := b.FullState()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		data   []byte
		stream bool
	}{{synTo(t, b, a), false}, {full, true}} {
		for bit := range len(tc.data) * 8 {
			d := bytes.Clone(tc.data)
			d[bit/8] ^= 1 << (bit % 8)
			var err error
			if tc.stream {
				_, err = a.StepFull(t0, d)
			} else {
				err = a.Step(t0, "addr-b", d)
			}
			if err == nil {
				t.Fatalf("bit %d of %d flipped: accepted", bit, len(d)*8)
			}
		}
	}
	if _, ok := a.NodeInfo("b", t0); ok {
		t.Fatal("a learnt of b from tampered input")
	}
	// The intact ones pass: the refusals were the flips'.
	if err := a.Step(t0, "addr-b", synTo(t, b, a)); err != nil {
		t.Fatalf("intact envelope refused: %v", err)
	}
}

// Moving a running cluster to encryption: a node that accepts plaintext
// takes both; one that sends plaintext is read by nodes without a key.
func TestPlaintextMigration(t *testing.T) {
	old := newTestCore(t, "old", nil)
	step1 := newTestCore(t, "step1", both(withKeys(key1), func(c *Config) { c.AcceptPlaintext, c.SendPlaintext = true, true }))
	step2 := newTestCore(t, "step2", both(withKeys(key1), func(c *Config) { c.AcceptPlaintext = true }))
	done := newTestCore(t, "done", withKeys(key1))
	for _, pair := range [][2]*Core{{old, step1}, {step1, step2}, {step2, done}, {old, step2}} {
		if err := pair[1].Step(t0, addrOf(pair[0]), synTo(t, pair[0], pair[1])); err != nil {
			t.Errorf("%s refused %s: %v", pair[1].ID(), pair[0].ID(), err)
		}
		pair[1].Ready()
	}
	if err := old.Step(t0, "addr-step1", synTo(t, step1, old)); err != nil {
		t.Errorf("a node without key refused step 1's plaintext: %v", err)
	}
	old.Ready()
	if err := done.Step(t0, "addr-old", synTo(t, old, done)); !errors.Is(err, errPlaintext) {
		t.Errorf("a node past the move took plaintext: %v", err)
	}
	for _, cfg := range []*Config{
		{Keyring: nil, AcceptPlaintext: true},
		{Keyring: mustKeyring(t, key1), SendPlaintext: true},
		{Keyring: &Keyring{}},
	} {
		cfg.ID = "x"
		if _, err := NewCore(cfg, "", t0); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewCore(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func mustKeyring(t testing.TB, keys ...[]byte) *Keyring {
	t.Helper()
	kr, err := NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// Rotation on two cores: install, use, remove, with traffic accepted at
// every step; after the old key is removed, its envelopes are refused.
func TestKeyringRotation(t *testing.T) {
	a := newTestCore(t, "a", withKeys(key1))
	b := newTestCore(t, "b", withKeys(key1))
	send := func(from, to *Core) error {
		err := to.Step(t0, addrOf(from), synTo(t, from, to))
		to.Ready()
		return err
	}
	ka, kb := a.cfg.Keyring, b.cfg.Keyring
	for _, kr := range []*Keyring{ka, kb} {
		if err := kr.Install(key3); err != nil {
			t.Fatal(err)
		}
	}
	if err := ka.Use(key3); err != nil { // a first: b still decrypts it
		t.Fatal(err)
	}
	if err := errors.Join(send(a, b), send(b, a)); err != nil {
		t.Fatalf("half-way through: %v", err)
	}
	oldEnvelope := synTo(t, b, a) // sealed with key1
	if err := kb.Use(key3); err != nil {
		t.Fatal(err)
	}
	for _, kr := range []*Keyring{ka, kb} {
		if err := kr.Remove(key1); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(send(a, b), send(b, a)); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if err := a.Step(t0, "addr-b", oldEnvelope); !errors.Is(err, errAuth) {
		t.Fatalf("an envelope of the removed key: %v", err)
	}
	if got := ka.Keys(); len(got) != 1 || !bytes.Equal(got[0], key3) {
		t.Fatalf("keys after rotation: %x", got)
	}
}

func TestKeyringErrors(t *testing.T) {
	if _, err := NewKeyring(make([]byte, 15)); !errors.Is(err, ErrKeySize) {
		t.Errorf("15-byte key: %v", err)
	}
	kr := mustKeyring(t, key1, key2)
	if err := kr.Remove(key1); !errors.Is(err, ErrRemovePrimary) {
		t.Errorf("removing the primary: %v", err)
	}
	if err := kr.Use(key3); !errors.Is(err, ErrKeyNotInstalled) {
		t.Errorf("using a key not installed: %v", err)
	}
	if err := kr.Remove(key3); !errors.Is(err, ErrKeyNotInstalled) {
		t.Errorf("removing a key not installed: %v", err)
	}
	if err := kr.Install(key1); err != nil || len(kr.Keys()) != 2 {
		t.Errorf("installing a key twice: %v, %d keys", err, len(kr.Keys()))
	}
	if err := kr.Use(key2); err != nil || !bytes.Equal(kr.Keys()[0], key2) || !bytes.Equal(kr.Keys()[1], key1) {
		t.Errorf("Use: %v, keys %x", err, kr.Keys())
	}
	if Fingerprint(key1) == Fingerprint(key2) || len(Fingerprint(key1)) != 16 {
		t.Errorf("fingerprints %s, %s", Fingerprint(key1), Fingerprint(key2))
	}
}

// A keyring holds at most MaxKeys keys: one more is refused, by Install
// and by NewKeyring, and installing a key already held still succeeds.
func TestKeyringBounded(t *testing.T) {
	keys := nKeys(MaxKeys + 1)
	if _, err := NewKeyring(keys[0], keys[1:]...); !errors.Is(err, ErrKeyringFull) {
		t.Fatalf("NewKeyring of %d keys: %v", len(keys), err)
	}
	kr := mustKeyring(t, keys[:MaxKeys]...)
	if err := kr.Install(keys[MaxKeys]); !errors.Is(err, ErrKeyringFull) {
		t.Fatalf("installing key %d: %v", MaxKeys+1, err)
	}
	if err := kr.Install(keys[1]); err != nil {
		t.Fatalf("installing a key held: %v", err)
	}
	if err := kr.Remove(keys[1]); err != nil {
		t.Fatal(err)
	}
	if err := kr.Install(keys[MaxKeys]); err != nil || len(kr.Keys()) != MaxKeys {
		t.Fatalf("installing after a removal: %v, %d keys", err, len(kr.Keys()))
	}
}

// nKeys returns n distinct 32-byte keys.
func nKeys(n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, bytes.Repeat([]byte{byte(0x40 + i)}, 32))
	}
	return out
}

// The hint selects the key: an envelope sealed with a secondary key opens
// (the hint names it), one whose hint was changed to another installed
// key's is refused (the hint is authenticated, and names the wrong key),
// and one whose hint names no key here is refused with no decryption
// tried (opens counts the attempts).
func TestKeyHintSelectsOneKey(t *testing.T) {
	keys := nKeys(MaxKeys)
	a := newTestCore(t, "a", withKeys(keys...))
	b := newTestCore(t, "b", withKeys(keys[2]))
	syn := synTo(t, b, a)
	if err := a.Step(t0, "addr-b", syn); err != nil {
		t.Fatalf("an envelope of a secondary key: %v", err)
	}
	a.Ready()
	for i, k := range keys {
		swapped := bytes.Clone(syn)
		h := keyHint(k)
		copy(swapped[2:6], h[:])
		err := a.Step(t0, "addr-b", swapped)
		if i == 2 {
			continue
		}
		if !errors.Is(err, errAuth) {
			t.Errorf("hint of key %d on an envelope of key 2: %v", i, err)
		}
	}
	forged := bytes.Clone(syn)
	copy(forged[2:6], []byte{0xde, 0xad, 0xbe, 0xef})
	before := len(a.cfg.Keyring.keys[2].sessions) + len(a.cfg.Keyring.keys[0].sessions)
	if err := a.Step(t0, "addr-b", forged); !errors.Is(err, errAuth) {
		t.Fatalf("an unknown hint: %v", err)
	}
	if a.Stats().Dropped["auth_failed"] != MaxKeys {
		t.Errorf("auth_failed = %d, want %d", a.Stats().Dropped["auth_failed"], MaxKeys)
	}
	// A forged session under an unknown hint derives no session key.
	forged[6] ^= 0xff
	_ = a.Step(t0, "addr-b", forged)
	if after := len(a.cfg.Keyring.keys[2].sessions) + len(a.cfg.Keyring.keys[0].sessions); after != before {
		t.Errorf("a forged hint derived %d session keys", after-before)
	}
}

// The cost of a forged datagram (a made-up session, so every attempt
// derives a session key) to a node with one key and with MaxKeys keys:
// with a hint that names no key, nothing is tried; with the hint of the
// primary (an attacker who saw traffic knows it), one key is, however
// many are installed.
//
//	go test -run '^$' -bench Forged -benchmem .
func BenchmarkForgedDatagram(b *testing.B) {
	for _, n := range []int{1, MaxKeys} {
		keys := nKeys(n)
		c := newTestCore(b, "a", withKeys(keys...))
		sender := newTestCore(b, "b", withKeys(keys[0]))
		syn := synTo(b, sender, c)
		for _, tc := range []struct {
			name string
			hint [hintSize]byte
		}{{"unknown-hint", [hintSize]byte{0xde, 0xad, 0xbe, 0xef}}, {"primary-hint", keyHint(keys[0])}} {
			b.Run(fmt.Sprintf("keys=%d/%s", n, tc.name), func(b *testing.B) {
				d := bytes.Clone(syn)
				copy(d[2:6], tc.hint[:])
				var i uint64
				for b.Loop() {
					i++
					binary.BigEndian.PutUint64(d[6:14], i) // a new session each time
					d[len(d)-1] ^= 1                       // and a wrong tag
					if err := c.Step(t0, "addr-b", d); err == nil {
						b.Fatal("forged datagram accepted")
					}
				}
			})
		}
	}
}

// The cost of sealing and opening one full datagram:
//
//	go test -run '^$' -bench Envelope -benchmem .
func BenchmarkEnvelope(b *testing.B) {
	c := newTestCore(b, "a", withKeys(key1))
	plain := bytes.Repeat([]byte{0x90}, c.maxPlain)
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		b.ReportAllocs()
		for b.Loop() {
			c.wrap(plain)
		}
	})
	sealed := c.wrap(plain)
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(sealed)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.unwrap(sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
