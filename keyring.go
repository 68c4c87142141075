package scuttlebutt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
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
)

// Keyring holds the keys of an encrypted cluster: one primary key that
// encrypts every datagram and stream, and any number of secondary keys that
// are tried, after the primary, to decrypt. Rotating a key with no downtime
// takes three steps, each done on every node before the next begins:
// Install the new key, Use it (make it primary), Remove the old one
// (docs/daemon.md has the procedure for the daemon).
//
// A Keyring is safe for concurrent use; a node sees changes at once.
type Keyring struct {
	mu   sync.RWMutex
	keys []ringKey // the primary first
}

type ringKey struct {
	key  []byte
	aead cipher.AEAD
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

func newRingKey(key []byte) (ringKey, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return ringKey{}, fmt.Errorf("%w, not %d", ErrKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return ringKey{}, err
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return ringKey{}, err
	}
	return ringKey{key: bytes.Clone(key), aead: aead}, nil
}

func (k *Keyring) find(key []byte) int {
	return slices.IndexFunc(k.keys, func(r ringKey) bool { return bytes.Equal(r.key, key) })
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
		k.keys = append(k.keys, r)
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
	r := k.keys[i]
	copy(k.keys[1:i+1], k.keys[:i])
	k.keys[0] = r
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
	k.keys = slices.Delete(k.keys, i, i+1)
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

// seal appends the envelope of plain to dst: the marker, the protocol
// version, then plain encrypted and authenticated with the primary key,
// aad authenticated with it.
func (k *Keyring) seal(dst, plain, aad []byte) []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	dst = append(dst, envelopeMarker, protocolVersion)
	return k.keys[0].aead.Seal(dst, nil, plain, aad)
}

// open decrypts an envelope's ciphertext (after marker and version) with
// each key in turn, the primary first, appending the plaintext to dst.
func (k *Keyring) open(dst, ciphertext, aad []byte) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, r := range k.keys {
		if out, err := r.aead.Open(dst, nil, ciphertext, aad); err == nil {
			return out, nil
		}
	}
	return nil, errAuth
}
