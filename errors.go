package scuttlebutt

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalidConfig is wrapped by the errors of Create for a bad Config.
	ErrInvalidConfig = errors.New("scuttlebutt: invalid config")
	// ErrClosed is returned by calls on a node that was closed or left.
	ErrClosed = errors.New("scuttlebutt: node closed")
	// ErrReservedKey is returned for keys that start with ReservedPrefix.
	ErrReservedKey = errors.New("scuttlebutt: key uses the reserved prefix")
	// ErrEmptyKey is returned for an empty key.
	ErrEmptyKey = errors.New("scuttlebutt: empty key")
	// ErrNoSeeds is returned by Seed when given no address.
	ErrNoSeeds = errors.New("scuttlebutt: no seed addresses")
)

// ReservedPrefix starts the keys the library keeps for itself (the node's
// address, its departure). User keys may not start with it.
const ReservedPrefix = ":"

// SizeError is returned when a key or value is larger than its limit.
type SizeError struct {
	What  string // "key" or "value"
	Size  int    // its size in bytes
	Limit int    // the limit in bytes
}

// Error says what was too large and by how much.
func (e *SizeError) Error() string {
	return fmt.Sprintf("scuttlebutt: %s is %d bytes, the limit is %d", e.What, e.Size, e.Limit)
}

// MaxValueSize returns the largest value a node with this MaxPacketSize
// accepts.
func MaxValueSize(maxPacketSize int) int { return maxPacketSize - PacketOverhead }

func checkKey(key string) error {
	switch {
	case key == "":
		return ErrEmptyKey
	case len(key) > MaxKeySize:
		return &SizeError{What: "key", Size: len(key), Limit: MaxKeySize}
	case strings.HasPrefix(key, ReservedPrefix):
		return fmt.Errorf("%w %q: %q", ErrReservedKey, ReservedPrefix, key)
	}
	return nil
}

func checkKeyValue(key, value string, maxPacketSize int) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if limit := MaxValueSize(maxPacketSize); len(value) > limit {
		return &SizeError{What: "value", Size: len(value), Limit: limit}
	}
	return nil
}
