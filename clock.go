package scuttlebutt

import "time"

// Clock is the source of wall-clock time: the times a node and the
// packages built on it (docker, lease, the daemon) write into state that
// other hosts read, or show to people. Durations (timeouts, the failure
// detector, TTLs) are measured on the local monotonic clock, never on a
// Clock, so a Clock that is off, or steps, changes stamps only: no decision
// compares two hosts' clocks (docs/design.md, "Time").
type Clock interface {
	// Now returns the current wall-clock time.
	Now() time.Time
}

// SystemClock is the host's clock: time.Now.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// OffsetClock is a clock that runs Offset() ahead of the host's clock
// (behind, when negative): for tests of clock skew and steps. The times it
// returns carry no monotonic reading, so that code which wrongly measured
// durations on a Clock would see the steps.
type OffsetClock struct {
	// Offset returns the offset in force now; nil: none.
	Offset func() time.Duration
}

// Now returns the host's time plus the offset.
func (c OffsetClock) Now() time.Time {
	var d time.Duration
	if c.Offset != nil {
		d = c.Offset()
	}
	return time.Now().Add(d).Round(0)
}

// clockOr returns c, or the system clock for nil.
func clockOr(c Clock) Clock {
	if c == nil {
		return SystemClock{}
	}
	return c
}
