package failure

import (
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// dur rounds ns nanoseconds to a Duration.
func dur(ns float64) time.Duration { return time.Duration(math.Round(ns)) }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// beats sends heartbeats of peer at start, start+every, ... (n heartbeats,
// n-1 intervals) and returns the time of the last one.
func beats(d *Detector, peer string, start, every time.Duration, n int) time.Duration {
	t := start
	for i := 0; i < n; i++ {
		if i > 0 {
			t += every
		}
		d.Heartbeat(peer, at(t))
	}
	return t
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	want := Config{Threshold: 8, WindowSize: 100, MinSamples: 2, InitialInterval: time.Second,
		PriorWeight: 2, MaxInterval: 10 * time.Second, PauseThreshold: 2 * time.Second}
	if c != want {
		t.Fatalf("DefaultConfig() = %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("Config{}.Validate() = %v", err)
	}
	want.MinStdDeviation = want.InitialInterval / 4 // filled in from InitialInterval
	if got := New(Config{}).cfg; got != want {
		t.Fatalf("New(Config{}).cfg = %+v, want %+v", got, want)
	}
}

func TestPhiByHand(t *testing.T) {
	// Intervals of exactly 1s and a prior of 1s: the mean is 1s whatever the
	// prior weight, so at t = 2s phi = 2/ln10.
	d := New(DefaultConfig())
	last := beats(d, "a", 0, time.Second, 5)
	if m, ok := d.Mean("a"); !ok || m != time.Second {
		t.Fatalf("Mean = %v, %v; want 1s, true", m, ok)
	}
	got := d.Phi("a", at(last+2*time.Second))
	if want := 2 / math.Ln10; !near(got, want) || math.Abs(got-0.8686) > 1e-4 {
		t.Fatalf("Phi = %v, want %v (0.8686)", got, want)
	}
	if got := d.Phi("a", at(last)); got != 0 {
		t.Fatalf("Phi at the last arrival = %v, want 0", got)
	}
	if got := d.Phi("a", at(last-time.Second)); got != 0 {
		t.Fatalf("Phi before the last arrival = %v, want 0", got)
	}

	// Prior weight 0 (not settable through Config, where 0 means default):
	// the mean is the measured mean alone.
	d = New(DefaultConfig())
	d.cfg.PriorWeight = 0
	d.setDerived()
	last = beats(d, "b", 0, 2*time.Second, 4) // 3 intervals of 2s
	if m, _ := d.Mean("b"); m != 2*time.Second {
		t.Fatalf("Mean = %v, want 2s", m)
	}
	if got, want := d.Phi("b", at(last+5*time.Second)), 5/(2*math.Ln10); !near(got, want) {
		t.Fatalf("Phi = %v, want %v", got, want)
	}
	// With no samples and no prior the mean falls back to InitialInterval.
	d.Heartbeat("c", at(0))
	if m, _ := d.Mean("c"); m != time.Second {
		t.Fatalf("Mean with no samples and no prior = %v, want 1s", m)
	}
}

func TestDetectionTime(t *testing.T) {
	// 100 ms heartbeats, prior 100 ms, threshold 8: suspected after
	// 8 * ln10 * 100ms = 1.8421 s of silence.
	d := New(Config{InitialInterval: 100 * time.Millisecond})
	last := beats(d, "a", 0, 100*time.Millisecond, 50)
	if m, _ := d.Mean("a"); m != 100*time.Millisecond {
		t.Fatalf("Mean = %v, want 100ms", m)
	}
	if d.Suspect("a", at(last+1842*time.Millisecond)) {
		t.Fatalf("suspected after 1.842 s (phi %v)", d.Phi("a", at(last+1842*time.Millisecond)))
	}
	if !d.Suspect("a", at(last+1843*time.Millisecond)) {
		t.Fatalf("not suspected after 1.843 s (phi %v)", d.Phi("a", at(last+1843*time.Millisecond)))
	}
}

func TestPriorDominatesNewPeer(t *testing.T) {
	d := New(DefaultConfig()) // prior 1s, weight 2
	d.Heartbeat("a", at(0))
	if m, ok := d.Mean("a"); !ok || m != time.Second {
		t.Fatalf("Mean of a new peer = %v, %v; want the prior 1s", m, ok)
	}
	// One sample of 100ms: (0.1 + 2) / 3 = 700ms, still near the prior.
	d.Heartbeat("a", at(100*time.Millisecond))
	if m, _ := d.Mean("a"); m != 700*time.Millisecond {
		t.Fatalf("Mean after one 100ms interval = %v, want 700ms", m)
	}
	// Phi follows the prior-weighted mean.
	if got, want := d.Phi("a", at(100*time.Millisecond+7*time.Second)), 7/(0.7*math.Ln10); !near(got, want) {
		t.Fatalf("Phi = %v, want %v", got, want)
	}
	// 99 samples: one slot left, so the prior weighs one pseudo-sample.
	last := beats(d, "a", 200*time.Millisecond, 100*time.Millisecond, 98) // 98 more intervals, 99 in all
	m, _ := d.Mean("a")
	if want := dur(10.9 * float64(time.Second) / 100); m != want {
		t.Fatalf("Mean with 99 of 100 samples = %v, want %v", m, want)
	}
	// A full window: the prior is gone, the mean is the measured one.
	d.Heartbeat("a", at(last+100*time.Millisecond))
	if m, _ := d.Mean("a"); m != 100*time.Millisecond {
		t.Fatalf("Mean with a full window = %v, want 100ms", m)
	}
}

func TestMinSamples(t *testing.T) {
	d := New(DefaultConfig())                          // threshold 8, prior 1s weight 2, MinSamples 2
	bound := dur(8 * math.Ln10 * float64(time.Second)) // 18.42s

	// A peer that sent a single heartbeat and died: convicted by the prior.
	d.Heartbeat("once", at(0))
	if d.Suspect("once", at(bound-time.Millisecond)) {
		t.Fatal("single-heartbeat peer suspected before the prior's bound")
	}
	if !d.Suspect("once", at(bound+time.Millisecond)) {
		t.Fatal("single-heartbeat peer not suspected after the prior's bound")
	}

	// One short interval: mean (0.01+2)/3 = 670ms, phi > 8 after 12.3s, but
	// with 1 < MinSamples intervals Suspect waits for the prior's bound.
	d.Heartbeat("new", at(0))
	d.Heartbeat("new", at(10*time.Millisecond))
	now := at(10*time.Millisecond + 15*time.Second)
	if phi := d.Phi("new", now); phi <= 8 {
		t.Fatalf("Phi = %v, want > 8", phi)
	}
	if d.Suspect("new", now) {
		t.Fatal("peer with 1 interval suspected before the prior's bound")
	}
	if !d.Suspect("new", at(10*time.Millisecond+bound+time.Millisecond)) {
		t.Fatal("peer with 1 interval not suspected after the prior's bound")
	}
	// A second interval reaches MinSamples: mean (0.02+2)/4 = 505ms, and
	// 15 s of silence now convicts.
	d.Heartbeat("new", at(20*time.Millisecond))
	if !d.Suspect("new", at(20*time.Millisecond+15*time.Second)) {
		t.Fatalf("peer with 2 intervals not suspected (phi %v)", d.Phi("new", at(20*time.Millisecond+15*time.Second)))
	}
}

func TestWindowSlides(t *testing.T) {
	d := New(Config{WindowSize: 4, MinSamples: 1})
	last := beats(d, "a", 0, time.Second, 5)                   // 4 intervals of 1s
	last = beats(d, "a", last+3*time.Second, 3*time.Second, 4) // 4 intervals of 3s
	// The 1s samples are forgotten, and the prior with them: the window
	// is full of 3s samples.
	m, _ := d.Mean("a")
	if want := 3 * time.Second; m != want {
		t.Fatalf("Mean = %v, want %v", m, want)
	}
	p := d.peers["a"]
	if len(p.samples) != 4 || cap(p.samples) != 4 {
		t.Fatalf("ring len %d cap %d, want 4 and 4", len(p.samples), cap(p.samples))
	}
	if p.sumUs != 12e6 {
		t.Fatalf("running sum = %dµs, want 12e6", p.sumUs)
	}
	// Half and half.
	beats(d, "a", last+time.Second, time.Second, 2)
	if got := d.peers["a"].sumUs; got != 8e6 {
		t.Fatalf("running sum = %dµs, want 8e6", got)
	}
}

func TestLazyRing(t *testing.T) {
	d := New(DefaultConfig())
	beats(d, "a", 0, time.Second, 3)
	if c := cap(d.peers["a"].samples); c > 4 {
		t.Fatalf("ring cap %d after 2 samples, want at most 4", c)
	}
	beats(d, "a", 10*time.Second, time.Second, 300)
	if c := cap(d.peers["a"].samples); c != 100 {
		t.Fatalf("ring cap %d with a full window, want 100", c)
	}
}

func TestMaxIntervalCap(t *testing.T) {
	d := New(DefaultConfig()) // MaxInterval 10s
	d.Heartbeat("a", at(0))
	d.Heartbeat("a", at(time.Second))
	d.Heartbeat("a", at(61*time.Second)) // 60s gap, recorded as 10s
	m, _ := d.Mean("a")
	if want := 3250 * time.Millisecond; m != want { // (1 + 10 + 2) / 4
		t.Fatalf("Mean = %v, want %v", m, want)
	}
}

func TestNonPositiveInterval(t *testing.T) {
	d := New(DefaultConfig())
	d.Heartbeat("a", at(time.Second))
	d.Heartbeat("a", at(time.Second)) // duplicate
	d.Heartbeat("a", at(0))           // out of order
	if n := len(d.peers["a"].samples); n != 0 {
		t.Fatalf("%d samples recorded, want 0", n)
	}
	d.Heartbeat("a", at(2*time.Second))
	if p := d.peers["a"]; len(p.samples) != 1 || p.samples[0] != 1e6 {
		t.Fatalf("samples %v, want [1000000]", p.samples)
	}
	// A sub-microsecond interval is recorded as 1µs, never 0.
	d.Heartbeat("a", at(2*time.Second+time.Nanosecond))
	if p := d.peers["a"]; p.samples[1] != 1 {
		t.Fatalf("sub-µs sample recorded as %d, want 1", p.samples[1])
	}
}

func TestPauseGuard(t *testing.T) {
	const round = 100 * time.Millisecond
	run := func(pause bool) (*Detector, time.Duration) {
		d := New(Config{InitialInterval: round})
		var now time.Duration
		for i := 0; i < 50; i++ {
			now = time.Duration(i) * round
			d.Tick(at(now))
			d.Heartbeat("a", at(now))
		}
		last := now
		if pause {
			now += 30 * time.Second // this process stalled 30 s
			d.Tick(at(now))
		} else {
			for now < last+30*time.Second { // it kept ticking, the peer was silent
				now += round
				d.Tick(at(now))
			}
		}
		return d, now
	}

	d, now := run(false)
	if !d.Suspect("a", at(now)) {
		t.Fatal("30 s of silence without a local pause: not suspected")
	}

	d, now = run(true)
	if d.Suspect("a", at(now)) {
		t.Fatalf("suspected right after a 30 s local pause (phi %v)", d.Phi("a", at(now)))
	}
	if phi := d.Phi("a", at(now)); phi != 0 {
		t.Fatalf("phi right after the pause = %v, want 0", phi)
	}
	// The peer is heard again: the interval recorded excludes the stall.
	d.Tick(at(now + round))
	d.Heartbeat("a", at(now+round))
	if m, _ := d.Mean("a"); m != round {
		t.Fatalf("Mean after the pause = %v, want %v", m, round)
	}
	// A real silence after the pause is still detected.
	if !d.Suspect("a", at(now+round+1843*time.Millisecond)) {
		t.Fatal("silence after the pause not detected")
	}

	// A gap not above PauseThreshold changes nothing.
	d = New(Config{InitialInterval: round})
	d.Tick(at(0))
	d.Heartbeat("a", at(0))
	d.Tick(at(2 * time.Second))
	if got, want := d.Phi("a", at(2*time.Second)), 2/(0.1*math.Ln10); !near(got, want) {
		t.Fatalf("Phi after a 2 s tick gap = %v, want %v", got, want)
	}
}

func TestPauseGuardNotPastNow(t *testing.T) {
	d := New(DefaultConfig())
	d.Tick(at(0))
	d.Heartbeat("a", at(0))
	d.Heartbeat("b", at(4*time.Second)) // heard during the gap
	d.Tick(at(5 * time.Second))         // 5 s gap
	if got := d.peers["a"].last; got != int64(5*time.Second) {
		t.Fatalf("a.last = %v, want 5s", time.Duration(got))
	}
	if got := d.peers["b"].last; got != int64(5*time.Second) {
		t.Fatalf("b.last = %v, want 5s (not past now)", time.Duration(got))
	}
}

func TestForgetAndUnknown(t *testing.T) {
	d := New(DefaultConfig())
	if d.Phi("x", at(time.Hour)) != 0 || d.Suspect("x", at(time.Hour)) || d.Len() != 0 {
		t.Fatal("unknown peer: want phi 0, not suspected, Len 0")
	}
	if m, ok := d.Mean("x"); ok || m != 0 {
		t.Fatalf("Mean of unknown = %v, %v; want 0, false", m, ok)
	}
	d.Forget("x") // no-op
	beats(d, "a", 0, 50*time.Millisecond, 10)
	beats(d, "b", 0, 50*time.Millisecond, 10)
	if d.Len() != 2 {
		t.Fatalf("Len = %d, want 2", d.Len())
	}
	if !d.Suspect("a", at(time.Hour)) {
		t.Fatal("a not suspected after an hour")
	}
	d.Forget("a")
	if d.Len() != 1 || d.Phi("a", at(time.Hour)) != 0 || d.Suspect("a", at(time.Hour)) {
		t.Fatal("forgotten peer still tracked")
	}
	if _, ok := d.Mean("a"); ok {
		t.Fatal("forgotten peer still has a mean")
	}
	// It starts afresh: the first heartbeat only records the arrival.
	d.Heartbeat("a", at(time.Hour))
	if m, _ := d.Mean("a"); m != time.Second || len(d.peers["a"].samples) != 0 {
		t.Fatalf("re-added peer: mean %v, %d samples; want the prior and none", m, len(d.peers["a"].samples))
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative threshold", Config{Threshold: -1}, "Threshold -1 is negative"},
		{"NaN threshold", Config{Threshold: math.NaN()}, "not a finite number"},
		{"Inf threshold", Config{Threshold: math.Inf(1)}, "not a finite number"},
		{"negative window", Config{WindowSize: -5}, "WindowSize -5 is negative"},
		{"negative min samples", Config{MinSamples: -1}, "MinSamples -1 is negative"},
		{"min samples over window", Config{WindowSize: 3, MinSamples: 4}, "MinSamples 4 exceeds WindowSize 3"},
		{"default min samples over window", Config{WindowSize: 1}, "MinSamples 2 exceeds WindowSize 1"},
		{"negative prior weight", Config{PriorWeight: -2}, "PriorWeight -2 is negative"},
		{"negative initial", Config{InitialInterval: -time.Second}, "InitialInterval -1s is negative"},
		{"tiny initial", Config{InitialInterval: time.Nanosecond}, "InitialInterval 1ns is shorter than the 1µs resolution"},
		{"negative max", Config{MaxInterval: -time.Second}, "MaxInterval -1s is negative"},
		{"tiny max", Config{MaxInterval: 10 * time.Nanosecond, InitialInterval: time.Nanosecond}, "MaxInterval 10ns is shorter"},
		{"huge max", Config{MaxInterval: 2 * time.Hour}, "exceeds the largest storable interval"},
		{"initial over max", Config{InitialInterval: 20 * time.Second}, "InitialInterval 20s exceeds MaxInterval 10s"},
		{"negative pause", Config{PauseThreshold: -time.Second}, "PauseThreshold -1s is negative"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
		// New never panics on a bad config, and the result works.
		d := New(c.cfg)
		beats(d, "a", 0, time.Second, 5)
		_ = d.Suspect("a", at(time.Minute))
		if err := d.cfg.Validate(); err != nil {
			t.Errorf("%s: New left an invalid config: %v", c.name, err)
		}
	}
	// Several problems are all reported.
	err := Config{Threshold: -1, PauseThreshold: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Threshold") || !strings.Contains(err.Error(), "PauseThreshold") {
		t.Fatalf("Validate() = %v, want both problems", err)
	}
	// Valid non-default values.
	ok := Config{Threshold: 12, WindowSize: 1000, MinSamples: 1000, InitialInterval: 5 * time.Second,
		PriorWeight: 1, MaxInterval: time.Hour, PauseThreshold: time.Minute}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
}

func TestNoAllocs(t *testing.T) {
	d := New(DefaultConfig())
	now := beats(d, "a", 0, 100*time.Millisecond, 200)
	if n := testing.AllocsPerRun(1000, func() {
		now += 100 * time.Millisecond
		d.Heartbeat("a", at(now))
	}); n != 0 {
		t.Errorf("Heartbeat allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		_ = d.Phi("a", at(now+time.Second))
		_ = d.Suspect("a", at(now+time.Second))
		d.Tick(at(now))
	}); n != 0 {
		t.Errorf("Phi+Suspect+Tick allocate %v times per call", n)
	}
}

func peerNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "node-" + strconv.Itoa(i)
	}
	return names
}

func BenchmarkHeartbeat(b *testing.B) {
	d := New(DefaultConfig())
	names := peerNames(1000)
	var now time.Duration
	for i := 0; i < 200; i++ { // fill every window
		now += time.Millisecond
		for _, n := range names {
			d.Heartbeat(n, at(now))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%len(names) == 0 {
			now += time.Millisecond
		}
		d.Heartbeat(names[i%len(names)], at(now))
	}
}

func BenchmarkPhi(b *testing.B) {
	d := New(DefaultConfig())
	names := peerNames(1000)
	var now time.Duration
	for i := 0; i < 200; i++ {
		now += time.Millisecond
		for _, n := range names {
			d.Heartbeat(n, at(now))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var sink float64
	for i := 0; b.Loop(); i++ {
		sink += d.Phi(names[i%len(names)], at(now+time.Second))
	}
	_ = sink
}

// BenchmarkNormalDeadline is what the gossip core pays per heartbeat with
// the normal model: the deadline over a full window of 100 intervals.
func BenchmarkNormalDeadline(b *testing.B) {
	d := New(Config{Distribution: Normal, InitialInterval: 500 * time.Millisecond})
	names := peerNames(1000)
	var now time.Duration
	for i := 0; i < 200; i++ {
		now += 500 * time.Millisecond
		for _, n := range names {
			d.Heartbeat(n, at(now))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_, _ = d.Deadline(names[i%len(names)])
	}
}

// BenchmarkMemory reports the heap per tracked peer with a full default
// window (1,000 peers).
func BenchmarkMemory(b *testing.B) {
	names := peerNames(1000)
	var perPeer float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d := New(DefaultConfig())
		var now time.Duration
		for i := 0; i < 101; i++ {
			now += time.Millisecond
			for _, n := range names {
				d.Heartbeat(n, at(now))
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perPeer = float64(after.HeapAlloc-before.HeapAlloc) / float64(len(names))
		runtime.KeepAlive(d)
	}
	b.ReportMetric(perPeer, "B/peer")
}

// Deadline is when Suspect turns true: false at the deadline, true just
// after, for a new peer (judged by the prior) and a peer with samples.
func TestDeadline(t *testing.T) {
	d := New(Config{})
	t0 := time.Unix(1000, 0)
	if _, ok := d.Deadline("p"); ok {
		t.Fatal("Deadline of an unknown peer")
	}
	d.Heartbeat("p", t0)
	dl, ok := d.Deadline("p")
	if !ok || d.Suspect("p", dl) || !d.Suspect("p", dl.Add(time.Microsecond)) {
		t.Fatalf("new peer: deadline %v after the arrival, Suspect at it %v, just after %v",
			dl.Sub(t0), d.Suspect("p", dl), d.Suspect("p", dl.Add(time.Microsecond)))
	}
	now := t0
	for range 10 {
		now = now.Add(time.Second)
		d.Heartbeat("p", now)
	}
	dl, _ = d.Deadline("p")
	// mean = (10 s + 2 s prior) / 12 = 1 s: phi passes 8 after 8 ln10 s.
	bound := 8 * math.Ln10 * float64(time.Second)
	want := now.Add(time.Duration(bound))
	if diff := dl.Sub(want); diff < -time.Microsecond || diff > time.Microsecond {
		t.Fatalf("deadline %v, want %v", dl.Sub(now), want.Sub(now))
	}
	if d.Suspect("p", dl.Add(-time.Millisecond)) || !d.Suspect("p", dl.Add(time.Millisecond)) {
		t.Fatal("Suspect disagrees with Deadline")
	}
}

// With the Normal model a regular peer is suspected a few deviations past
// its mean, and a peer whose intervals vary (a lossy link) much later.
func TestNormalModel(t *testing.T) {
	cfg := Config{Distribution: Normal, InitialInterval: 500 * time.Millisecond,
		MinStdDeviation: 100 * time.Millisecond, MaxInterval: 10 * time.Second}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	z := math.Sqrt2 * math.Erfcinv(2e-8) // phi 8: 5.61 deviations
	feed := func(intervals ...time.Duration) (*Detector, time.Time) {
		d := New(cfg)
		now := time.Unix(1000, 0)
		d.Heartbeat("a", now)
		for i := 0; i < 100; i++ { // a full window: the prior is gone
			now = now.Add(intervals[i%len(intervals)])
			d.Heartbeat("a", now)
		}
		return d, now
	}
	// Exactly 500 ms apart: the deviation is the floor, 100 ms.
	d, last := feed(500 * time.Millisecond)
	want := last.Add(500*time.Millisecond + time.Duration(z*float64(100*time.Millisecond)))
	if dl, _ := d.Deadline("a"); dl.Sub(want).Abs() > time.Millisecond {
		t.Errorf("regular peer: deadline %v after the last arrival, want %v", dl.Sub(last), want.Sub(last))
	}
	if d.Suspect("a", want.Add(-10*time.Millisecond)) || !d.Suspect("a", want.Add(10*time.Millisecond)) {
		t.Errorf("regular peer: Suspect does not turn at the deadline %v", want.Sub(last))
	}
	if phi := d.Phi("a", want); math.Abs(phi-8) > 0.01 {
		t.Errorf("phi at the deadline = %v, want 8", phi)
	}
	if phi := d.Phi("a", last.Add(500*time.Millisecond)); math.Abs(phi-math.Log10(2)) > 1e-9 {
		t.Errorf("phi at the mean = %v, want log10(2)", phi)
	}
	// One interval in four lost (1 s instead of 500 ms): mean 625 ms,
	// deviation 216.5 ms, suspected after 1.84 s instead of 1.06 s.
	d, last = feed(500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond, time.Second)
	mean, sd := 625e6, math.Sqrt(3*125e6*125e6+375e6*375e6)/2
	want = last.Add(time.Duration(mean + z*sd))
	if dl, _ := d.Deadline("a"); dl.Sub(want).Abs() > time.Millisecond {
		t.Errorf("lossy peer: deadline %v after the last arrival, want %v", dl.Sub(last), want.Sub(last))
	}
}

// Until MinSamples, a Normal detector needs the prior's bound: the prior
// interval plus the threshold's deviations of a quarter of it.
func TestNormalPrior(t *testing.T) {
	d := New(Config{Distribution: Normal, InitialInterval: time.Second, MinStdDeviation: 100 * time.Millisecond})
	now := time.Unix(1000, 0)
	d.Heartbeat("a", now)
	z := math.Sqrt2 * math.Erfcinv(2e-8)
	bound := time.Second + time.Duration(z*float64(250*time.Millisecond))
	if dl, _ := d.Deadline("a"); dl.Sub(now.Add(bound)).Abs() > time.Millisecond {
		t.Errorf("prior deadline %v, want %v", dl.Sub(now), bound)
	}
	if d.Suspect("a", now.Add(bound-time.Millisecond)) || !d.Suspect("a", now.Add(bound+time.Millisecond)) {
		t.Errorf("a new peer is not suspected at the prior's bound %v", bound)
	}
	// A huge threshold means never: the deadline is far ahead, not an
	// overflow into the past.
	never := New(Config{Distribution: Normal, Threshold: 1e9, InitialInterval: time.Second})
	never.Heartbeat("a", now)
	never.Heartbeat("a", now.Add(time.Second))
	never.Heartbeat("a", now.Add(2*time.Second))
	if dl, _ := never.Deadline("a"); dl.Before(now.Add(100 * 365 * 24 * time.Hour)) {
		t.Errorf("threshold 1e9: deadline %v, want one far ahead", dl)
	}
	if never.Suspect("a", now.Add(time.Hour)) {
		t.Error("threshold 1e9: suspected after an hour")
	}
	if err := (Config{Distribution: 7}).Validate(); err == nil || !strings.Contains(err.Error(), "Distribution 7") {
		t.Errorf("unknown distribution: %v", err)
	}
	if err := (Config{MinStdDeviation: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "MinStdDeviation") {
		t.Errorf("negative deviation: %v", err)
	}
}
