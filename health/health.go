// Package health runs health checks of services: an HTTP GET (any 2xx is
// passing, as ServiceMonitor's monitor-url), a TCP connect, or a command's
// exit status; each at an interval, with a timeout, and with thresholds in
// both directions, so that one slow answer does not flip a service.
//
// The verdict is a pure state machine, State, fed with the results of
// checks; Run drives a Checker with a clock and reports each change of
// verdict. Publishing the verdict (in a service record, through
// scuttlebutt.Node.UpdateLocal) is the caller's.
package health

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Status is a check's verdict.
type Status string

const (
	// Starting: no verdict yet (fewer than Rise successes or Fall failures
	// since the check started).
	Starting Status = "starting"
	// Passing: the last Rise checks (at least) succeeded.
	Passing Status = "passing"
	// Failing: the last Fall checks (at least) failed.
	Failing Status = "failing"
)

// MaxOutput bounds the output kept of a check, so that a verdict fits in a
// service record.
const MaxOutput = 256

// Thresholds turn results into a verdict: Rise consecutive successes make
// a check passing, Fall consecutive failures make it failing. Zero values
// mean 1.
type Thresholds struct {
	Rise, Fall int
}

// State is the verdict of one check: a pure state machine fed with the
// results of checks in order. The zero State is Starting.
type State struct {
	Thresholds
	Status    Status
	Since     time.Time // when Status last changed (zero while Starting)
	LastCheck time.Time // when the last result was observed
	Output    string    // the last result's output, at most MaxOutput bytes

	successes, failures int // consecutive
}

// Observe takes the result of one check done at at: ok, and its output
// (an error message, or the start of a body). It returns whether the
// verdict changed.
func (s *State) Observe(at time.Time, ok bool, output string) bool {
	if s.Status == "" {
		s.Status = Starting
	}
	s.LastCheck, s.Output = at, Trim(output, MaxOutput)
	next := s.Status
	if ok {
		s.successes++
		s.failures = 0
		if s.successes >= max(1, s.Rise) {
			next = Passing
		}
	} else {
		s.failures++
		s.successes = 0
		if s.failures >= max(1, s.Fall) {
			next = Failing
		}
	}
	if next == s.Status {
		return false
	}
	s.Status, s.Since = next, at
	return true
}

// Trim returns s cut to at most n bytes, on a UTF-8 boundary, with "…"
// at the end when it was cut.
func Trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := max(0, n-len(ellipsis))
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut-- // inside a multi-byte character
	}
	return s[:cut] + ellipsis
}

// Checker is one kind of check. Check returns nil when the service is
// healthy, and an output either way (a status line, an error). It must
// return when ctx ends.
type Checker interface {
	Check(ctx context.Context) (output string, err error)
}

// Result is the verdict after a check, as Run reports it.
type Result struct {
	Status    Status
	Since     time.Time
	LastCheck time.Time
	Output    string
	Latency   time.Duration // of the last check
	Changed   bool          // the verdict changed with this check
	OK        bool          // the last check succeeded
	TimedOut  bool          // the last check failed by running out of time
}

// Config is how a check runs.
type Config struct {
	// Interval between the starts of two checks. Default 5 s.
	Interval time.Duration
	// Timeout of one check; past it the check fails. Default: Interval,
	// at most 10 s.
	Timeout time.Duration
	Thresholds
}

// ErrConfig is wrapped by the errors of Config.Check.
var ErrConfig = errors.New("health: bad check configuration")

// WithDefaults returns the configuration in force (defaults filled in),
// or an error wrapping ErrConfig.
func (c Config) WithDefaults() (Config, error) {
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = min(c.Interval, 10*time.Second)
	}
	switch {
	case c.Interval < 10*time.Millisecond:
		return c, fmt.Errorf("%w: interval %v is under 10ms", ErrConfig, c.Interval)
	case c.Timeout < 0 || c.Timeout > c.Interval:
		return c, fmt.Errorf("%w: timeout %v must be positive and at most the interval %v", ErrConfig, c.Timeout, c.Interval)
	case c.Rise < 0 || c.Fall < 0:
		return c, fmt.Errorf("%w: thresholds must not be negative", ErrConfig)
	}
	return c, nil
}

// Run checks at every interval until ctx ends, and calls report after
// every check with the verdict (Changed tells whether it changed). The
// first check runs at once. report runs on Run's goroutine. It returns an
// error only for a bad Config.
func Run(ctx context.Context, chk Checker, cfg Config, report func(Result)) error {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return err
	}
	st := State{Thresholds: cfg.Thresholds, Status: Starting}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		out, err := chk.Check(cctx)
		timedOut := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if timedOut && err == nil {
			err = context.DeadlineExceeded
		}
		if err != nil {
			out = describe(err, out, cfg.Timeout, timedOut)
		}
		latency := time.Since(start)
		changed := st.Observe(start, err == nil, out)
		report(Result{Status: st.Status, Since: st.Since, LastCheck: st.LastCheck, Output: st.Output,
			Latency: latency, Changed: changed, OK: err == nil, TimedOut: timedOut})
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// describe is the output of a failed check.
func describe(err error, out string, timeout time.Duration, timedOut bool) string {
	msg := err.Error()
	if timedOut {
		msg = fmt.Sprintf("timed out after %v", timeout)
	}
	if out != "" && out != msg {
		return msg + ": " + out
	}
	return msg
}
