package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// The verdict follows the thresholds in both directions: it starts
// Starting, needs Rise successes to pass and Fall failures to fail, and a
// lone result against the verdict changes nothing.
func TestStateThresholds(t *testing.T) {
	s := State{Thresholds: Thresholds{Rise: 2, Fall: 3}}
	steps := []struct {
		ok      bool
		want    Status
		changed bool
	}{
		{true, Starting, false},
		{true, Passing, true},
		{false, Passing, false}, // one slow answer: no flap
		{true, Passing, false},
		{false, Passing, false},
		{false, Passing, false},
		{false, Failing, true},
		{true, Failing, false},
		{false, Failing, false},
		{true, Failing, false},
		{true, Passing, true},
	}
	for i, st := range steps {
		at := t0.Add(time.Duration(i) * time.Second)
		changed := s.Observe(at, st.ok, "out")
		if s.Status != st.want || changed != st.changed {
			t.Fatalf("step %d (ok %v): status %s changed %v, want %s %v", i, st.ok, s.Status, changed, st.want, st.changed)
		}
		if changed && !s.Since.Equal(at) {
			t.Fatalf("step %d: Since %v, want %v", i, s.Since, at)
		}
		if !s.LastCheck.Equal(at) {
			t.Fatalf("step %d: LastCheck %v", i, s.LastCheck)
		}
	}
	// Zero thresholds mean one.
	var z State
	if !z.Observe(t0, false, "") || z.Status != Failing {
		t.Fatalf("zero thresholds: %s", z.Status)
	}
}

func TestTrim(t *testing.T) {
	if got := Trim("short", 10); got != "short" {
		t.Fatalf("Trim kept %q", got)
	}
	long := strings.Repeat("é", 200) // 400 bytes
	got := Trim(long, 101)
	if len(got) > 101 || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("Trim gave %d bytes, valid %v: %q", len(got), utf8.ValidString(got), got)
	}
	var s State
	s.Observe(t0, true, strings.Repeat("x", 10*MaxOutput))
	if len(s.Output) > MaxOutput {
		t.Fatalf("kept %d bytes of output", len(s.Output))
	}
}

// flaky is an HTTP server whose answer the test sets: a code, or a hang;
// and, before that, failNext answers of 500.
type flaky struct {
	code     atomic.Int32 // 0: hang until the request ends
	failNext atomic.Int32
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.failNext.Add(-1) >= 0 {
		w.WriteHeader(500)
		return
	}
	f.failNext.Store(0)
	code := int(f.code.Load())
	if code == 0 {
		<-r.Context().Done()
		return
	}
	w.WriteHeader(code)
	w.Write([]byte("state " + http.StatusText(code)))
}

func TestHTTPChecker(t *testing.T) {
	f := &flaky{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	chk := HTTP{URL: srv.URL + "/health"}
	for _, tc := range []struct {
		code   int32
		ok     bool
		output string
	}{
		{200, true, "200 OK: state OK"},
		{204, true, "204 No Content"},
		{500, false, "500 Internal Server Error: state Internal Server Error"},
		{301, false, "301 Moved Permanently: state Moved Permanently"},
	} {
		f.code.Store(tc.code)
		out, err := chk.Check(context.Background())
		if (err == nil) != tc.ok || out != tc.output {
			t.Errorf("answer %d: output %q err %v; want %q, ok %v", tc.code, out, err, tc.output, tc.ok)
		}
	}
	f.code.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := chk.Check(ctx); err == nil {
		t.Fatal("a hanging server passed")
	}
	if _, err := (HTTP{URL: "http://127.0.0.1:1/"}).Check(context.Background()); err == nil {
		t.Fatal("a closed port passed")
	}
	if _, err := (HTTP{URL: "::not a url"}).Check(context.Background()); err == nil {
		t.Fatal("a bad URL passed")
	}
}

func TestTCPChecker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if _, err := (TCP{Addr: addr}).Check(context.Background()); err != nil {
		t.Fatalf("an open port failed: %v", err)
	}
	ln.Close()
	if _, err := (TCP{Addr: addr}).Check(context.Background()); err == nil {
		t.Fatal("a closed port passed")
	}
}

func TestCommandChecker(t *testing.T) {
	if out, err := (Command{Path: "sh", Args: []string{"-c", "echo fine"}}).Check(context.Background()); err != nil || out != "fine" {
		t.Fatalf("exit 0: %q %v", out, err)
	}
	out, err := (Command{Path: "sh", Args: []string{"-c", "echo broken; exit 3"}}).Check(context.Background())
	if err == nil || err.Error() != "exit status 3" || out != "broken" {
		t.Fatalf("exit 3: %q %v", out, err)
	}
	out, _ = (Command{Path: "sh", Args: []string{"-c", "head -c 100000 /dev/zero | tr '\\0' x"}}).Check(context.Background())
	if len(out) > MaxOutput {
		t.Fatalf("kept %d bytes of a command's output", len(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := (Command{Path: "sleep", Args: []string{"10"}}).Check(ctx); err == nil {
		t.Fatal("a command killed at its timeout passed")
	}
	if _, err := (Command{Path: "/no/such/command"}).Check(context.Background()); err == nil {
		t.Fatal("a missing command passed")
	}
}

// recorder keeps what Run reports.
type recorder struct {
	mu      sync.Mutex
	results []Result
	changed chan Status
}

func (r *recorder) report(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
	if res.Changed {
		r.changed <- res.Status
	}
}

func (r *recorder) await(t *testing.T, want Status) {
	t.Helper()
	select {
	case got := <-r.changed:
		if got != want {
			t.Fatalf("verdict became %s, want %s", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no verdict %s within 10 s", want)
	}
}

// A real server answering 200, then 500, then hanging: passing, failing,
// and still failing through timeouts; back to passing when it answers
// again. A single 500 under the fall threshold does not flip the verdict.
func TestRunFollowsAServer(t *testing.T) {
	f := &flaky{}
	f.code.Store(200)
	srv := httptest.NewServer(f)
	defer srv.Close()
	rec := &recorder{changed: make(chan Status, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, HTTP{URL: srv.URL}, Config{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond,
			Thresholds: Thresholds{Rise: 2, Fall: 3}}, rec.report)
	}()
	rec.await(t, Passing)

	// One 500 between successes: no change over the next checks.
	f.failNext.Store(1)
	waitResults(t, rec, func(r Result) bool { return strings.HasPrefix(r.Output, "HTTP 500") && !r.OK && !r.TimedOut })
	n := rec.count()
	waitResults(t, rec, func(Result) bool { return rec.countLocked() >= n+5 })
	rec.mu.Lock()
	for _, r := range rec.results[n-1:] {
		if r.Changed || r.Status != Passing {
			t.Fatalf("one failed check flipped the verdict: %+v", r)
		}
	}
	rec.mu.Unlock()

	f.code.Store(500)
	rec.await(t, Failing)
	f.code.Store(0) // hang: each check times out
	waitResults(t, rec, func(r Result) bool {
		return strings.Contains(r.Output, "timed out") && r.Status == Failing && r.TimedOut && !r.OK
	})
	f.code.Store(200)
	rec.await(t, Passing)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.results)
}

// countLocked is count for a condition of waitResults, which holds r.mu.
func (r *recorder) countLocked() int { return len(r.results) }

func waitResults(t *testing.T, rec *recorder, cond func(Result) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rec.mu.Lock()
		for _, r := range rec.results {
			if cond(r) {
				rec.mu.Unlock()
				return
			}
		}
		rec.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // polling the results
	}
	t.Fatal("no such result within 10 s")
}

func TestRunBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Interval: time.Millisecond},
		{Interval: time.Second, Timeout: 2 * time.Second},
		{Interval: time.Second, Thresholds: Thresholds{Rise: -1}},
	} {
		err := Run(context.Background(), TCP{Addr: "127.0.0.1:1"}, cfg, func(Result) {})
		if !errors.Is(err, ErrConfig) {
			t.Errorf("Run(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}
