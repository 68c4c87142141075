package scuttlebutt

import (
	"errors"
	"fmt"
	"slices"
)

// The encrypted envelope (docs/protocol.md, "Encryption"). With a Keyring,
// every datagram and every stream frame is
//
//	0xC1 | version | hint (4) | session (8) | counter (8) | AES-GCM ciphertext | tag (16)
//
// 0xC1 is the one byte msgpack never uses, so an envelope can never be
// mistaken for a plaintext message (which opens with a msgpack array). The
// version is in clear so that a node of another protocol version is told
// apart and counted; it is authenticated too, with "SB" and the cluster ID,
// as additional data: a message of another cluster or version fails
// authentication instead of being parsed. The hint names the key that
// sealed the envelope (a hash of it, keyring.go), so a receiver tries one
// key, not each of its keyring: a forged datagram costs one attempt at
// most, however many keys are installed. It is authenticated too.
//
// Nonces never repeat under a key: each sender seals under a key of its
// own session, derived from the cluster key with HKDF-SHA256 and a random
// 8-byte session ID, and numbers its envelopes with a counter (the nonce is
// four zero bytes and the counter). Random nonces under the one cluster key
// would reach GCM's bound of 2^32 envelopes in days in a large cluster.

const (
	envelopeMarker = 0xC1
	hintSize       = 4
	sessionSize    = 8
	counterSize    = 8
	// EnvelopeOverhead is what encryption adds to a datagram: marker,
	// version, key hint, session, counter and tag. It comes out of
	// MaxPacketSize, never on top of it; PacketOverhead already leaves
	// room for it, so the value limit is the same with or without
	// encryption.
	EnvelopeOverhead = 2 + hintSize + sessionSize + counterSize + 16
)

// Reasons a datagram or stream is refused before decoding, counted in
// Stats.Dropped.
var (
	errAuth      = errors.New("failed authentication: not encrypted with a key of this keyring, or altered")
	errPlaintext = errors.New("plaintext refused: this node requires encryption")
	errEncrypted = errors.New("encrypted, but this node has no keyring")
)

// additionalData is what every envelope of this cluster authenticates
// besides its ciphertext: "SB", the version, room for the key hint (filled
// in by the keyring for each envelope), the cluster ID.
func additionalData(cluster string) []byte {
	return append([]byte{'S', 'B', protocolVersion, 0, 0, 0, 0}, cluster...)
}

// wrap returns the bytes to send for an encoded message: sealed with the
// keyring's primary key, or a copy of the plaintext when there is no
// keyring or SendPlaintext is set.
func (c *Core) wrap(plain []byte) []byte {
	if !c.sealing() {
		return slices.Clone(plain)
	}
	return c.cfg.Keyring.seal(make([]byte, 0, len(plain)+EnvelopeOverhead), plain, c.aad)
}

// sealing tells whether this node encrypts what it sends.
func (c *Core) sealing() bool { return c.cfg.Keyring != nil && !c.cfg.SendPlaintext }

// unwrap returns the message inside received bytes: the plaintext of an
// envelope, or the bytes themselves if plaintext is accepted here.
func (c *Core) unwrap(data []byte) ([]byte, error) {
	if len(data) == 0 || data[0] != envelopeMarker {
		if c.cfg.Keyring != nil && !c.cfg.AcceptPlaintext {
			return nil, errPlaintext
		}
		return data, nil
	}
	if c.cfg.Keyring == nil {
		return nil, errEncrypted
	}
	if len(data) < EnvelopeOverhead {
		return nil, fmt.Errorf("%w: envelope of %d bytes", errTruncated, len(data))
	}
	if data[1] != protocolVersion {
		return nil, fmt.Errorf("%w %d", errBadVersion, data[1])
	}
	return c.cfg.Keyring.open(nil, data[2:], c.aad)
}
