package scuttlebutt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Errors of Keyring.
var (
	// ErrKeySize is returned for a key that is not 16, 24 or 32 bytes long.
	ErrKeySize = errors.New("scuttlebutt: an encryption key must be 16, 24 or 32 bytes (AES-128, AES-192 or AES-256)")
	// ErrKeyNotInstalled is returned by Use and Remove for a key the keyring
	// does not hold.
	ErrKeyNotInstalled = errors.New("scuttlebutt: key not installed")
	// ErrRemovePrimary is returned by Remove for the primary key: make
	// another key primary first.
	ErrRemovePrimary = errors.New("scuttlebutt: the primary key cannot be removed; make another key primary first")
	// ErrKeyringFull is returned by Install and NewKeyring past MaxKeys
	// keys: remove one first.
	ErrKeyringFull = fmt.Errorf("scuttlebutt: a keyring holds at most %d keys; remove one first", MaxKeys)
)

// MaxKeys bounds the keys of a Keyring. A rotation needs two (three while
// one is replaced in a hurry); each installed key is a key an attacker's
// datagram could name in its hint, so it is a cost, and the bound keeps
// it small.
const MaxKeys = 4

// Keyring holds the keys of an encrypted cluster: one primary key that
// encrypts every datagram and stream, and up to MaxKeys-1 secondary keys
// that decrypt. An envelope names the key that sealed it by a short hint
// (a hash of the key), so a receiver tries only the key, or keys, of that
// hint: a forged datagram costs one decryption at most. Rotating a key with no downtime
// takes three steps, each done on every node before the next begins:
// Install the new key, Use it (make it primary), Remove the old one
// (docs/daemon.md has the procedure for the daemon).
//
// A Keyring is safe for concurrent use; a node sees changes at once.
type Keyring struct {
	mu   sync.RWMutex
	keys []*ringKey // the primary first; replaced, never changed in place
}

type ringKey struct {
	key  []byte
	hint [hintSize]byte // keyHint(key)

	// Sending: a session of its own, a key derived for it, and a counter
	// that makes each nonce (envelope.go).
	session [sessionSize]byte
	sealer  cipher.AEAD
	counter atomic.Uint64

	// Receiving: the keys derived for the sessions of the senders heard.
	mu       sync.Mutex
	sessions map[[sessionSize]byte]cipher.AEAD
}

// NewKeyring returns a keyring with primary as its primary key and others
// as secondary keys. Keys are 16, 24 or 32 bytes: AES-128, -192 or -256.
func NewKeyring(primary []byte, others ...[]byte) (*Keyring, error) {
	k := &Keyring{}
	for _, key := range append([][]byte{primary}, others...) {
		if err := k.Install(key); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// maxSessions bounds the derived keys a ring key remembers; past it they
// are forgotten and derived again when needed, so datagrams with made-up
// sessions cost time, never memory.
const maxSessions = 4096

func newRingKey(key []byte) (*ringKey, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w, not %d", ErrKeySize, len(key))
	}
	r := &ringKey{key: bytes.Clone(key), hint: keyHint(key), sessions: make(map[[sessionSize]byte]cipher.AEAD)}
	rand.Read(r.session[:])
	var err error
	if r.sealer, err = sessionAEAD(key, r.session); err != nil {
		return nil, err
	}
	return r, nil
}

// keyHint names a key in an envelope: the first 4 bytes of
// SHA-256("scuttlebutt key hint " + key). It tells which key to try; it
// reveals 32 bits of a hash of a key of at least 128 bits, nothing usable.
func keyHint(key []byte) [hintSize]byte {
	sum := sha256.Sum256(append([]byte("scuttlebutt key hint "), key...))
	return [hintSize]byte(sum[:hintSize])
}

// sessionAEAD returns AES-GCM under the key of one sender's session:
// HKDF-SHA256 of the ring key, with the session in its info, as long as the
// ring key.
func sessionAEAD(key []byte, session [sessionSize]byte) (cipher.AEAD, error) {
	sk, err := hkdf.Key(sha256.New, key, nil, "scuttlebutt session "+string(session[:]), len(key))
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sk)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// opener returns the AEAD of a sender's session under this ring key.
func (r *ringKey) opener(session [sessionSize]byte) cipher.AEAD {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.sessions[session]; ok {
		return a
	}
	a, err := sessionAEAD(r.key, session)
	if err != nil {
		return nil
	}
	if len(r.sessions) >= maxSessions {
		clear(r.sessions)
	}
	r.sessions[session] = a
	return a
}

func (k *Keyring) find(key []byte) int {
	return slices.IndexFunc(k.keys, func(r *ringKey) bool { return bytes.Equal(r.key, key) })
}

// Install adds a key for decryption. The first key installed in an empty
// keyring becomes primary. Installing a key already held changes nothing.
func (k *Keyring) Install(key []byte) error {
	r, err := newRingKey(key)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.find(key) < 0 {
		if len(k.keys) >= MaxKeys {
			return ErrKeyringFull
		}
		k.keys = append(slices.Clip(k.keys), r) // a new array: readers keep theirs
	}
	return nil
}

// Use makes an installed key the primary key: from now on it encrypts.
func (k *Keyring) Use(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(key)
	if i < 0 {
		return ErrKeyNotInstalled
	}
	keys := append([]*ringKey{k.keys[i]}, k.keys[:i]...)
	k.keys = append(keys, k.keys[i+1:]...)
	return nil
}

// Remove removes a secondary key: datagrams encrypted with it are refused
// from now on.
func (k *Keyring) Remove(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(key)
	switch {
	case i < 0:
		return ErrKeyNotInstalled
	case i == 0:
		return ErrRemovePrimary
	}
	k.keys = slices.Concat(k.keys[:i], k.keys[i+1:])
	return nil
}

// Keys returns copies of the keys, the primary first.
func (k *Keyring) Keys() [][]byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([][]byte, len(k.keys))
	for i, r := range k.keys {
		out[i] = bytes.Clone(r.key)
	}
	return out
}

// Fingerprint names a key without revealing it: the first 8 bytes of its
// SHA-256, in hex. Logs and the daemon's key listing show keys this way.
func Fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// seal appends the envelope of plain to dst: marker, version, the primary
// key's hint, its session and the next value of its counter, then plain
// encrypted and authenticated under the session's key, with aad (whose
// hint bytes, after "SB" and the version, are set to the key's) authenticated
// too.
func (k *Keyring) seal(dst, plain, aad []byte) []byte {
	k.mu.RLock()
	r := k.keys[0]
	k.mu.RUnlock()
	var nonce [12]byte
	n := r.counter.Add(1)
	binary.BigEndian.PutUint64(nonce[4:], n)
	dst = append(dst, envelopeMarker, protocolVersion)
	dst = append(dst, r.hint[:]...)
	dst = append(dst, r.session[:]...)
	dst = append(dst, nonce[4:]...)
	return r.sealer.Seal(dst, nonce[:], plain, withHint(aad, r.hint))
}

// withHint returns aad with its hint bytes set.
func withHint(aad []byte, hint [hintSize]byte) []byte {
	out := slices.Clone(aad)
	copy(out[3:3+hintSize], hint[:])
	return out
}

// open decrypts the rest of an envelope after marker and version (hint,
// session, counter, ciphertext and tag) with the key its hint names (each
// key of that hint, should two share one), appending the plaintext to dst.
// An envelope whose hint names no key here costs no decryption at all.
func (k *Keyring) open(dst, rest, aad []byte) ([]byte, error) {
	hint := [hintSize]byte(rest[:hintSize])
	rest = rest[hintSize:]
	var session [sessionSize]byte
	var nonce [12]byte
	copy(session[:], rest)
	copy(nonce[4:], rest[sessionSize:])
	ciphertext := rest[sessionSize+counterSize:]
	k.mu.RLock()
	keys := k.keys
	k.mu.RUnlock()
	for _, r := range keys {
		if r.hint != hint {
			continue
		}
		if a := r.opener(session); a != nil {
			if out, err := a.Open(dst, nonce[:], ciphertext, withHint(aad, hint)); err == nil {
				return out, nil
			}
		}
	}
	return nil, errAuth
}
