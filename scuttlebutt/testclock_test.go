package main

import (
	"strings"
	"testing"
	"time"
)

// SCUTTLEBUTT_TEST_CLOCK_OFFSET offsets the agent's clock, with steps at
// run time; unset, the agent has the host's clock; bad values are refused
// with the expected form.
func TestAgentClockSkewEnv(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == testClockEnv {
				return v
			}
			return ""
		}
	}
	if c, err := testClock(env(""), time.Now()); c != nil || err != nil {
		t.Errorf("unset: clock %v, err %v; want the host's (nil)", c, err)
	}
	start := time.Now()
	c, err := testClock(env("-10m"), start)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(c.Now()); d < 10*time.Minute-time.Second || d > 10*time.Minute+time.Second {
		t.Errorf("-10m: the clock is %v behind", d)
	}
	// Started 10 s ago: the step at 5 s is in force, the one at 1 h not yet.
	c, err = testClock(env("0,-1h@5s,+1h@1h"), time.Now().Add(-10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(c.Now()); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Errorf("after the step: the clock is %v behind, want an hour", d)
	}
	for _, bad := range []string{"ten", "-1h@5s", "0,-1h", "0,-1h@5s,1h@2s", "0,1h@x"} {
		if _, err := testClock(env(bad), start); err == nil || !strings.Contains(err.Error(), "want offsets such as") {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}

// Local events are shown by the agent's clock: wallOf moves a monotonic
// time onto it; without a clock it is the host's.
func TestWallOfClockSkew(t *testing.T) {
	c, err := testClock(func(string) string { return "-10m" }, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Second)
	if d := at.Sub(wallOf(c, at)); d < 10*time.Minute-time.Second || d > 10*time.Minute+time.Second {
		t.Errorf("shown %v before the host's time, want 10m", d)
	}
	if got := wallOf(struct{}{}, at); !got.Equal(at) {
		t.Errorf("without a clock: %v, want %v", got, at)
	}
}
