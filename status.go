package scuttlebutt

import "fmt"

// Status is what this node believes about another node's liveness.
type Status uint8

const (
	// StatusAlive: the node's heartbeat is advancing.
	StatusAlive Status = iota + 1
	// StatusDead: the failure detector's phi for the node passed the
	// threshold. Its keys stay readable until it is removed.
	StatusDead
	// StatusLeft: the node announced its departure with Leave.
	StatusLeft
	// StatusRemoved: the node was dead or left for longer than
	// Config.RemoveAfter and was forgotten. Only StatusSubscriber sees it.
	StatusRemoved
)

// String returns "alive", "dead", "left" or "removed".
func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusDead:
		return "dead"
	case StatusLeft:
		return "left"
	case StatusRemoved:
		return "removed"
	}
	return "unknown"
}

// MarshalText encodes the status as its name, for JSON and logs.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a status name written by MarshalText, so that a
// NodeInfo read back from JSON keeps its status.
func (s *Status) UnmarshalText(b []byte) error {
	for c := StatusAlive; c <= StatusRemoved; c++ {
		if string(b) == c.String() {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("scuttlebutt: unknown status %q", b)
}
