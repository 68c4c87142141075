package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// testClockEnv names the environment variable that offsets the agent's wall
// clock, for tests of clock skew only (docs/daemon.md): it is read only
// when set, and an agent without it uses the host's clock.
//
// Its value is a comma-separated list of offsets, each but the first with
// the time after the agent's start from which it holds: "-10m" runs ten
// minutes behind; "0,-1h@5s" runs on time, then steps an hour back five
// seconds after the start.
const testClockEnv = "SCUTTLEBUTT_TEST_CLOCK_OFFSET"

// wallNow returns the time by clock now, or the host's for nil.
func wallNow(clock func() time.Time) time.Time {
	if clock == nil {
		return time.Now()
	}
	return clock()
}

// wallOf returns when a local event at t (a time.Now with its monotonic
// reading) happened by the wall clock of n (a scuttlebutt.Clock, such as
// the node; else the host's): what the API shows, so that every time an
// agent shows is by its one clock (scuttlebutt.Config.Clock).
func wallOf(n any, t time.Time) time.Time {
	c, ok := n.(scuttlebutt.Clock)
	if !ok {
		return t
	}
	return c.Now().Add(-time.Since(t))
}

// clockStep is one offset of a test clock, in force from after.
type clockStep struct {
	after, offset time.Duration
}

// parseTestClock parses the value of testClockEnv.
func parseTestClock(v string) ([]clockStep, error) {
	bad := func(why string) error {
		return fmt.Errorf("%s=%q: %s; want offsets such as -10m or 0,-1h@5s (test use only)", testClockEnv, v, why)
	}
	var steps []clockStep
	for i, part := range strings.Split(v, ",") {
		off, at, hasAt := strings.Cut(strings.TrimSpace(part), "@")
		var s clockStep
		var err error
		if s.offset, err = time.ParseDuration(off); err != nil {
			return nil, bad(fmt.Sprintf("offset %q is not a duration", off))
		}
		switch {
		case i == 0 && hasAt:
			return nil, bad("the first offset holds from the start: no @")
		case i > 0 && !hasAt:
			return nil, bad(fmt.Sprintf("offset %q needs @<time after the start>", part))
		case hasAt:
			if s.after, err = time.ParseDuration(at); err != nil || s.after <= steps[len(steps)-1].after {
				return nil, bad(fmt.Sprintf("@%s: want durations after the start, increasing", at))
			}
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// testClock returns the agent's clock from getenv: nil (the host's clock)
// unless testClockEnv is set.
func testClock(getenv func(string) string, start time.Time) (scuttlebutt.Clock, error) {
	v := getenv(testClockEnv)
	if v == "" {
		return nil, nil
	}
	steps, err := parseTestClock(v)
	if err != nil {
		return nil, err
	}
	return scuttlebutt.OffsetClock{Offset: func() time.Duration {
		since := time.Since(start) // monotonic
		off := steps[0].offset
		for _, s := range steps[1:] {
			if since >= s.after {
				off = s.offset
			}
		}
		return off
	}}, nil
}
