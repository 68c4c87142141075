package failure

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ln10 is the natural logarithm of 10: phi = t / (mean * ln10).
const ln10 = math.Ln10

// maxBound caps the silence a Deadline adds to the last arrival, in
// nanoseconds (146 years), so that a bound beyond any int64 (the Normal
// model with a huge Threshold, meant as "never") is a time far ahead.
const maxBound = float64(1 << 62)

// maxStoredInterval is the longest interval a sample can hold: samples are
// kept as uint32 microseconds.
const maxStoredInterval = time.Duration(math.MaxUint32) * time.Microsecond

// Distribution is the model of a peer's heartbeat inter-arrival times that
// phi is computed from.
type Distribution uint8

const (
	// Exponential models intervals as exponential with the measured mean,
	// as Cassandra does: phi = t / (mean * ln 10). It suits heartbeats that
	// come often and irregularly (many per detection time).
	Exponential Distribution = iota
	// Normal models intervals as normal with the measured mean and standard
	// deviation (at least MinStdDeviation), as the paper and Akka do:
	// phi = -log10(1 - F(t)). It suits sparse, regular heartbeats: a peer
	// is suspected a few deviations past its mean interval, and later when
	// its intervals vary (a lossy link).
	Normal
)

// Config of a Detector. Zero fields take DefaultConfig's values; because of
// that, a field cannot be set to zero through a Config (for instance the
// weakest prior is PriorWeight 1, and the pause guard is effectively disabled
// with a very large PauseThreshold).
type Config struct {
	// Threshold is the phi above which a peer is suspected dead; default 8.
	// With the exponential model a peer is suspected after a silence of
	// Threshold * ln(10) * mean, so 8 means about 18.4 mean intervals.
	Threshold float64

	// WindowSize is the maximum number of inter-arrival samples kept per
	// peer; the oldest is dropped when a new one arrives at a full window.
	// The ring is allocated lazily as it fills. Default 100.
	WindowSize int

	// MinSamples is the number of recorded intervals a peer needs before it
	// may be suspected on the strength of its measured mean. Until then
	// Suspect also requires the silence to exceed what the threshold means
	// for the prior alone, Threshold * ln(10) * InitialInterval (18.4 s with
	// the defaults). Phi itself is not affected. Default 2; at most
	// WindowSize.
	MinSamples int

	// InitialInterval is the prior mean interval, assumed for a new peer;
	// default 1s. It must not exceed MaxInterval.
	InitialInterval time.Duration

	// PriorWeight is how many pseudo-samples of InitialInterval count in the
	// mean. They take window slots, and give them up as real samples fill
	// the window: with w = min(PriorWeight, WindowSize - samples),
	// mean = (sum of samples + w*InitialInterval) / (samples + w). A new
	// peer is thus judged by a mean that starts at the prior and moves to
	// the measured mean; once the window is full the prior is gone, so a
	// cautious prior (for large clusters, where a peer's heartbeats arrive
	// seldom and in bursts at first) does not slow detection later.
	// Default 2.
	PriorWeight int

	// MaxInterval caps a recorded interval: a longer gap is recorded as
	// MaxInterval, so that one long silence does not poison the mean.
	// Default 10s; at most about 71 minutes (samples are uint32
	// microseconds).
	MaxInterval time.Duration

	// Distribution is the model of inter-arrival times; default
	// Exponential.
	Distribution Distribution

	// MinStdDeviation, with the Normal model, is the least standard
	// deviation assumed, so that very regular heartbeats (a deviation near
	// zero) do not make a late one suspect at once. Default a quarter of
	// InitialInterval, which is also the prior's deviation.
	MinStdDeviation time.Duration

	// PauseThreshold is the local-pause guard: when Tick sees more than this
	// since the previous Tick, the detecting process itself is taken to have
	// stalled, and the stalled time is not held against any peer. It must be
	// comfortably larger than the interval between Ticks. Default 2s.
	PauseThreshold time.Duration
}

// DefaultConfig returns the defaults: Threshold 8, WindowSize 100,
// MinSamples 2, InitialInterval 1s, PriorWeight 2, MaxInterval 10s,
// PauseThreshold 2s.
func DefaultConfig() Config {
	return Config{
		Threshold:       8,
		WindowSize:      100,
		MinSamples:      2,
		InitialInterval: time.Second,
		PriorWeight:     2,
		MaxInterval:     10 * time.Second,
		PauseThreshold:  2 * time.Second,
	}
}

// withDefaults returns c with its zero fields replaced by the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Threshold == 0 {
		c.Threshold = d.Threshold
	}
	if c.WindowSize == 0 {
		c.WindowSize = d.WindowSize
	}
	if c.MinSamples == 0 {
		c.MinSamples = d.MinSamples
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = d.InitialInterval
	}
	if c.PriorWeight == 0 {
		c.PriorWeight = d.PriorWeight
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = d.MaxInterval
	}
	if c.PauseThreshold == 0 {
		c.PauseThreshold = d.PauseThreshold
	}
	if c.MinStdDeviation == 0 {
		c.MinStdDeviation = c.InitialInterval / 4
	}
	return c
}

// Validate reports whether c is usable, after zero fields are given their
// defaults. It returns a descriptive error for negative, non-finite or
// inconsistent values, joining all the problems found.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("failure: "+format, args...))
	}
	r := c.withDefaults()
	switch {
	case math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0):
		bad("Threshold %v is not a finite number", c.Threshold)
	case c.Threshold < 0:
		bad("Threshold %v is negative", c.Threshold)
	}
	if c.WindowSize < 0 {
		bad("WindowSize %d is negative", c.WindowSize)
	}
	if c.MinSamples < 0 {
		bad("MinSamples %d is negative", c.MinSamples)
	} else if c.WindowSize >= 0 && r.MinSamples > r.WindowSize {
		bad("MinSamples %d exceeds WindowSize %d: a peer could never have enough samples", r.MinSamples, r.WindowSize)
	}
	if c.PriorWeight < 0 {
		bad("PriorWeight %d is negative", c.PriorWeight)
	}
	okInitial, okMax := true, true
	if c.InitialInterval < 0 {
		bad("InitialInterval %v is negative", c.InitialInterval)
		okInitial = false
	} else if r.InitialInterval < time.Microsecond {
		bad("InitialInterval %v is shorter than the 1µs resolution", r.InitialInterval)
		okInitial = false
	}
	if c.MaxInterval < 0 {
		bad("MaxInterval %v is negative", c.MaxInterval)
		okMax = false
	} else if r.MaxInterval < time.Microsecond {
		bad("MaxInterval %v is shorter than the 1µs resolution", r.MaxInterval)
		okMax = false
	} else if r.MaxInterval > maxStoredInterval {
		bad("MaxInterval %v exceeds the largest storable interval %v", r.MaxInterval, maxStoredInterval)
		okMax = false
	}
	if okInitial && okMax && r.InitialInterval > r.MaxInterval {
		bad("InitialInterval %v exceeds MaxInterval %v: no recorded interval could ever match the prior", r.InitialInterval, r.MaxInterval)
	}
	if c.PauseThreshold < 0 {
		bad("PauseThreshold %v is negative", c.PauseThreshold)
	}
	if c.Distribution > Normal {
		bad("Distribution %d is unknown", c.Distribution)
	}
	if c.MinStdDeviation < 0 {
		bad("MinStdDeviation %v is negative", c.MinStdDeviation)
	}
	return errors.Join(errs...)
}

// peer is what a Detector remembers of one peer: 48 bytes plus its ring of
// 4-byte samples.
type peer struct {
	last    int64    // last arrival, nanoseconds since Detector.base
	sumUs   int64    // sum of samples, microseconds
	samples []uint32 // inter-arrival samples in microseconds; a ring once len == WindowSize
	next    int      // ring position overwritten next, once the ring is full
}

// Detector is a phi-accrual failure detector tracking many peers, keyed by
// string. It has no clock and no goroutines: every method takes the current
// time. A Detector is not safe for concurrent use; the caller must serialise
// calls (for instance under the lock that guards its membership table).
type Detector struct {
	cfg      Config
	peers    map[string]*peer
	base     time.Time // origin of the int64 offsets; set by the first Heartbeat or Tick
	hasBase  bool
	lastTick int64 // offset of the previous Tick
	hasTick  bool

	priorBound float64 // the silence that convicts by the prior alone, in nanoseconds
	z          float64 // Normal: the deviations past the mean at which phi = Threshold
}

// New returns a Detector with cfg, zero fields taking DefaultConfig's
// values. New does not validate cfg: call cfg.Validate first to get an
// error for a bad configuration; New replaces each invalid field by its
// default and clamps MinSamples to WindowSize, so that it never panics.
func New(cfg Config) *Detector {
	c := cfg.withDefaults()
	d := DefaultConfig()
	if math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) || c.Threshold < 0 {
		c.Threshold = d.Threshold
	}
	if c.WindowSize < 0 {
		c.WindowSize = d.WindowSize
	}
	if c.MinSamples < 0 {
		c.MinSamples = d.MinSamples
	}
	if c.MinSamples > c.WindowSize {
		c.MinSamples = c.WindowSize
	}
	if c.PriorWeight < 0 {
		c.PriorWeight = d.PriorWeight
	}
	if c.MaxInterval < time.Microsecond || c.MaxInterval > maxStoredInterval {
		c.MaxInterval = d.MaxInterval
	}
	if c.InitialInterval < time.Microsecond {
		c.InitialInterval = d.InitialInterval
	}
	if c.InitialInterval > c.MaxInterval {
		c.InitialInterval = c.MaxInterval
	}
	if c.PauseThreshold < 0 {
		c.PauseThreshold = d.PauseThreshold
	}
	if c.Distribution > Normal {
		c.Distribution = Exponential
	}
	if c.MinStdDeviation < 0 {
		c.MinStdDeviation = c.InitialInterval / 4
	}
	det := &Detector{cfg: c, peers: make(map[string]*peer)}
	det.setDerived()
	return det
}

// setDerived computes the values that depend on cfg only.
func (d *Detector) setDerived() {
	i := float64(d.cfg.InitialInterval)
	if d.cfg.Distribution == Normal {
		// P(X > mean + z*sd) = 10^-Threshold.
		d.z = math.Sqrt2 * math.Erfcinv(2*math.Pow(10, -d.cfg.Threshold))
		d.priorBound = i + d.z*max(i/4, float64(d.cfg.MinStdDeviation))
		return
	}
	d.priorBound = d.cfg.Threshold * ln10 * i
}

// priorWeight is how many pseudo-samples of the prior count for p.
func (d *Detector) priorWeight(p *peer) int {
	return max(0, min(d.cfg.PriorWeight, d.cfg.WindowSize-len(p.samples)))
}

// sdNs returns the standard deviation of p's intervals around mean, in
// nanoseconds, at least MinStdDeviation. Each pseudo-sample of the prior
// counts as InitialInterval with a deviation of its own of a quarter of
// it, so the prior alone has the mean InitialInterval and that deviation.
func (d *Detector) sdNs(p *peer, mean float64) float64 {
	w := d.priorWeight(p)
	n := len(p.samples) + w
	if n == 0 {
		return max(float64(d.cfg.InitialInterval)/4, float64(d.cfg.MinStdDeviation))
	}
	var sq float64
	for _, us := range p.samples {
		x := float64(us)*1e3 - mean
		sq += x * x
	}
	i := float64(d.cfg.InitialInterval)
	sq += float64(w) * ((i-mean)*(i-mean) + i*i/16)
	return max(math.Sqrt(sq/float64(n)), float64(d.cfg.MinStdDeviation))
}

// bound returns the silence after which p is suspected, in nanoseconds.
func (d *Detector) bound(p *peer) float64 {
	mean := d.meanNs(p)
	var b float64
	if d.cfg.Distribution == Normal {
		b = mean + d.z*d.sdNs(p, mean)
	} else {
		b = d.cfg.Threshold * ln10 * mean
	}
	if len(p.samples) < d.cfg.MinSamples {
		b = max(b, d.priorBound)
	}
	return b
}

// offset converts now to nanoseconds since d.base. time.Time.Sub uses the
// monotonic clock readings when both times carry one.
func (d *Detector) offset(now time.Time) int64 {
	if !d.hasBase {
		d.base, d.hasBase = now, true
	}
	return int64(now.Sub(d.base))
}

// Heartbeat records that a heartbeat of peer arrived at now. The first call
// for a peer (or the first after Forget) only records the arrival time.
// Later calls record the interval since the previous arrival, capped at
// MaxInterval; an interval <= 0 (a duplicate or out-of-order call) records
// nothing and leaves the last arrival time unchanged.
func (d *Detector) Heartbeat(peerID string, now time.Time) {
	off := d.offset(now)
	p, ok := d.peers[peerID]
	if !ok {
		d.peers[peerID] = &peer{last: off}
		return
	}
	interval := off - p.last
	if interval <= 0 {
		return
	}
	p.last = off
	if interval > int64(d.cfg.MaxInterval) {
		interval = int64(d.cfg.MaxInterval)
	}
	us := (interval + 500) / 1000 // round to the microsecond
	if us < 1 {
		us = 1
	}
	d.record(p, uint32(us))
}

// record adds one sample to p's ring, growing the ring lazily up to
// WindowSize and then overwriting the oldest sample.
func (d *Detector) record(p *peer, us uint32) {
	w := d.cfg.WindowSize
	if len(p.samples) < w {
		if len(p.samples) == cap(p.samples) {
			n := min(max(2*cap(p.samples), 4), w)
			s := make([]uint32, len(p.samples), n)
			copy(s, p.samples)
			p.samples = s
		}
		p.samples = append(p.samples, us)
		p.sumUs += int64(us)
		return
	}
	p.sumUs += int64(us) - int64(p.samples[p.next])
	p.samples[p.next] = us
	p.next++
	if p.next == w {
		p.next = 0
	}
}

// meanNs returns the prior-weighted mean interval of p in nanoseconds.
func (d *Detector) meanNs(p *peer) float64 {
	w := d.priorWeight(p)
	n := len(p.samples) + w
	if n == 0 {
		return float64(d.cfg.InitialInterval)
	}
	return (float64(p.sumUs)*1e3 + float64(w)*float64(d.cfg.InitialInterval)) / float64(n)
}

// Phi returns the suspicion level of peer at now, t the time since peer's
// last arrival and mean the prior-weighted mean interval (see Mean): with
// the Exponential model phi = t / (mean * ln 10); with the Normal model
// phi = -log10(P(X > t)) for X normal with that mean and the measured
// standard deviation (at least MinStdDeviation). It is 0 for an unknown
// peer and when now is not after the last arrival.
func (d *Detector) Phi(peerID string, now time.Time) float64 {
	p, ok := d.peers[peerID]
	if !ok {
		return 0
	}
	t := float64(d.offset(now) - p.last)
	if t <= 0 {
		return 0
	}
	mean := d.meanNs(p)
	if d.cfg.Distribution == Normal {
		sd := d.sdNs(p, mean)
		return -math.Log10(0.5 * math.Erfc((t-mean)/(sd*math.Sqrt2)))
	}
	return t / (mean * ln10)
}

// Suspect reports whether peer is suspected dead at now: Phi(peer, now) >
// Threshold. It is false for an unknown peer. While peer has fewer than
// MinSamples recorded intervals its measured mean is not trusted on its own:
// Suspect then also requires the silence to exceed the silence at which the
// prior alone would convict: Threshold * ln(10) * InitialInterval with the
// Exponential model (18.4 s with the defaults), InitialInterval plus the
// threshold's deviations of max(InitialInterval/4, MinStdDeviation) with the
// Normal one. So a peer that sent a single heartbeat and
// died is still convicted, and a new peer whose first interval happened to be
// short is not convicted early.
func (d *Detector) Suspect(peerID string, now time.Time) bool {
	p, ok := d.peers[peerID]
	if !ok {
		return false
	}
	t := float64(d.offset(now) - p.last)
	if t <= 0 {
		return false
	}
	return t > d.bound(p)
}

// Deadline returns the time after which Suspect(peer, t) holds, if no
// heartbeat of peer arrives and no local pause is detected in between: the
// last arrival plus the silence that convicts. Both a heartbeat and the
// pause guard can only move it; a caller that judges many peers each round
// may skip Suspect until a peer's deadline passes, and ask again after each
// Heartbeat. ok is false for an unknown peer.
func (d *Detector) Deadline(peerID string) (deadline time.Time, ok bool) {
	p, ok := d.peers[peerID]
	if !ok {
		return time.Time{}, false
	}
	b := d.bound(p)
	if !(b < maxBound) { // +Inf with the Normal model and a huge Threshold
		b = maxBound
	}
	return d.base.Add(time.Duration(p.last) + time.Duration(b)), true
}

// Tick is to be called once per local round, before the round's heartbeats
// are passed to Heartbeat. It implements the local-pause guard: when more
// than PauseThreshold has passed since the previous Tick, the detecting
// process itself is taken to have stalled for that whole gap, and every
// peer's last arrival time is moved forward by the gap (but not past now).
// Nobody is then convicted because this process was stopped, and the
// stalled time is never recorded as an interval. The first Tick, or a Tick
// whose now is not after the previous one, only records the time.
func (d *Detector) Tick(now time.Time) {
	off := d.offset(now)
	if d.hasTick {
		if pause := off - d.lastTick; pause > int64(d.cfg.PauseThreshold) {
			for _, p := range d.peers {
				if p.last < off {
					p.last = min(p.last+pause, off)
				}
			}
		}
	}
	d.lastTick, d.hasTick = off, true
}

// Forget drops all memory of peer, for a peer removed from the cluster or
// restarted with a new generation. Its next Heartbeat starts afresh.
func (d *Detector) Forget(peerID string) {
	delete(d.peers, peerID)
}

// Mean returns the mean interval used for peer, including what is left of
// the prior (see Config.PriorWeight), rounded to the nanosecond. ok is false for an unknown peer.
func (d *Detector) Mean(peerID string) (mean time.Duration, ok bool) {
	p, ok := d.peers[peerID]
	if !ok {
		return 0, false
	}
	return time.Duration(math.Round(d.meanNs(p))), true
}

// Len returns the number of peers tracked.
func (d *Detector) Len() int {
	return len(d.peers)
}
