package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// DefaultTTL is the TTL of a checked record when none is given: a record
// whose publisher stopped rewriting it stops counting as healthy that long
// after its last write. It is rewritten every third of it, so a reader
// sees it expire only when two rewrites in a row were lost.
const DefaultTTL = 30 * time.Second

// MinTTL is the shortest TTL accepted: it must exceed the time a write
// takes to reach every node, or the refreshes would not keep up.
const MinTTL = time.Second

// Registration is a service instance that a program publishes itself,
// rather than the adapter from a container: what `scuttlebutt watch`
// registers with its agent, and what Watch publishes through a node. Its
// key is svc/<Service>/<ID>.
type Registration struct {
	Service string          // service name ([A-Za-z0-9._-], at most 64 bytes): what `hosts --label` asks for
	ID      string          // service ID, unique within the service (same rules)
	Host    string          // address to reach the instance at
	Port    int             // port to reach it at; 0: none
	Proto   string          // tcp (default), udp or sctp
	Tags    []string        // copied into the record
	Info    json.RawMessage // free-form JSON copied into the record (ServiceMonitor's --service-info)
	Started time.Time       // when the instance started; zero: when the registration was first published
	Maint   string          // maintenance reason copied into the record (see MaintPrefix); empty: not in maintenance
}

// ErrRegistration is wrapped by the errors of Registration.Validate.
var ErrRegistration = errors.New("docker: bad registration")

// validName tells whether s is a service name or ID: 1 to 64 bytes of
// [A-Za-z0-9._-].
func validName(s string) bool { return s != "" && sanitize(s) == s }

// Validate checks the registration's names, address and info.
func (g Registration) Validate() error {
	switch {
	case !validName(g.Service):
		return fmt.Errorf("%w: service name %q: want 1 to 64 bytes of A-Z a-z 0-9 . _ -", ErrRegistration, g.Service)
	case !validName(g.ID):
		return fmt.Errorf("%w: service ID %q: want 1 to 64 bytes of A-Z a-z 0-9 . _ -", ErrRegistration, g.ID)
	case len(g.Key()) > scuttlebutt.MaxKeySize:
		return fmt.Errorf("%w: service name and ID are %d bytes together, at most %d", ErrRegistration, len(g.Service)+len(g.ID), scuttlebutt.MaxKeySize-len(KeyPrefix)-1)
	case g.Host == "" || strings.ContainsAny(g.Host, " /\t\n"):
		return fmt.Errorf("%w: host %q: want an address or a host name", ErrRegistration, g.Host)
	case g.Port < 0 || g.Port > 65535:
		return fmt.Errorf("%w: port %d: want 0 to 65535", ErrRegistration, g.Port)
	case g.Proto != "" && g.Proto != "tcp" && g.Proto != "udp" && g.Proto != "sctp":
		return fmt.Errorf("%w: protocol %q: want tcp, udp or sctp", ErrRegistration, g.Proto)
	case len(g.Info) > 0 && !json.Valid(g.Info):
		return fmt.Errorf("%w: info is not valid JSON", ErrRegistration)
	case len(g.Maint) > MaxMaintReason:
		return fmt.Errorf("%w: maintenance reason of %d bytes, at most %d", ErrRegistration, len(g.Maint), MaxMaintReason)
	}
	return nil
}

// Key returns the registration's key, svc/<service>/<ID>.
func (g Registration) Key() string { return KeyPrefix + g.Service + "/" + g.ID }

// IsRegistrationKey tells a registration's key (svc/<service>/<ID>) from
// the adapter's.
func IsRegistrationKey(key string) bool {
	rest, ok := strings.CutPrefix(key, KeyPrefix)
	return ok && strings.Count(rest, "/") == 1
}

// record returns the registration's record without a verdict.
func (g Registration) record() Record {
	proto := g.Proto
	if proto == "" {
		proto = "tcp"
	}
	var info json.RawMessage
	if len(g.Info) > 0 {
		var b bytes.Buffer
		if json.Compact(&b, g.Info) == nil {
			info = json.RawMessage(b.Bytes())
		}
	}
	return Record{
		V: RecordVersion, Service: g.Service, Name: g.ID, Host: g.Host, Port: g.Port, Private: g.Port,
		Proto: proto, Tags: g.Tags, Info: info, Health: HealthStarting, State: StateRunning, Started: g.Started.Unix(),
		Maint: g.Maint,
	}
}

// verdict is a check's verdict as published in a record, and the rule of
// when to rewrite it: at once when the status changes or a failing check
// starts or stops timing out, and when a third of the TTL has passed since
// the last write (a refresh). Between writes the record keeps the check
// time and output of its last write: checks that change nothing do not
// spread through the cluster.
//
// When to rewrite is timed on the local monotonic clock (mono); the wall
// clock (wall) only stamps the record: the check's time and the expiry
// that old readers compare with their own clocks.
type verdict struct {
	ttl      time.Duration
	check    Check
	timedOut bool      // the check of the published record timed out
	written  time.Time // when the published record was written, monotonic; zero before the first write
	expires  time.Time // of the published record by the wall clock, for old readers
}

// observe takes a result at mono (the monotonic clock) and wall (the wall
// clock, the same instant) and reports whether the record must be written.
func (v *verdict) observe(res health.Result, mono, wall time.Time) bool {
	status := res.Status
	if status == "" {
		status = health.Starting
	}
	if string(status) == v.check.Status && !v.written.IsZero() && mono.Sub(v.written) < v.ttl/3 &&
		(status != health.Failing || res.TimedOut == v.timedOut) {
		return false
	}
	v.check, v.timedOut = Check{Status: string(status), Output: res.Output}, res.TimedOut
	if !res.LastCheck.IsZero() {
		// The check's time by the wall clock: as long before wall as
		// it was before mono.
		v.check.At = wall.Add(-mono.Sub(res.LastCheck)).UnixMilli()
	}
	v.written, v.expires = mono, wall.Add(v.ttl)
	return true
}

// expire marks the verdict expired: its checker stopped reporting for a
// whole TTL. Written by the owner, it is what readers go by (see
// Record.ExpiredAt).
func (v *verdict) expire(mono, wall time.Time) {
	v.check.Status, v.timedOut = CheckExpired, false
	v.written, v.expires = mono, wall
}

// apply sets the verdict in r, combining it with the Docker health r has.
func (v *verdict) apply(r *Record, docker string) {
	c := v.check
	r.Check = &c
	r.Health = CombineHealth(docker, health.Status(c.Status))
	if c.Status == CheckExpired {
		r.Health = HealthUnhealthy // for readers that know only Health
	}
	r.Expires = 0
	if !v.expires.IsZero() {
		r.Expires = v.expires.UnixMilli()
	}
}

// ErrRecordTooLarge is returned when a record does not fit the value limit
// even without its check's output and its tags.
var ErrRecordTooLarge = errors.New("docker: service record too large")

// fit encodes r within limit bytes: it trims the check's output, then drops
// exported labels, then tags.
func fit(r Record, limit int) (string, error) {
	v := encodeRecord(r)
	if len(v) > limit && r.Check != nil && r.Check.Output != "" {
		// The longest trimmed output that fits (escapes make its JSON
		// longer than itself): a binary search over its length.
		c := *r.Check
		full := c.Output
		r.Check = &c
		lo, hi := 0, len(full) // lo fits (an empty output), hi does not
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			c.Output = health.Trim(full, mid)
			if len(encodeRecord(r)) <= limit {
				lo = mid
			} else {
				hi = mid
			}
		}
		c.Output = ""
		if lo > len("…") {
			c.Output = health.Trim(full, lo)
		}
		v = encodeRecord(r)
	}
	if len(v) > limit {
		r.Labels = nil
		v = encodeRecord(r)
	}
	if len(v) > limit {
		r.Tags = nil
		v = encodeRecord(r)
	}
	if len(v) > limit {
		return "", fmt.Errorf("%w: %d bytes, the limit is %d (shorten the info or the names)", ErrRecordTooLarge, len(v), limit)
	}
	return v, nil
}

// PublishOptions configure a Publication and Watch.
type PublishOptions struct {
	// TTL of the published record (see Record.Expires). Default DefaultTTL;
	// at least MinTTL.
	TTL time.Duration
	// MaxValueSize bounds the encoded record. Default 888, the value limit
	// of a node with the default 1400-byte packets.
	MaxValueSize int
	// elapsed is the monotonic clock that times rewrites and expiry;
	// nil: time.Now. Tests set it.
	elapsed func() time.Time

	// Now is the wall clock of the times written into the record (its
	// expiry for old readers, the check's time, the start); nil: the
	// publisher's Now if it has one (a *scuttlebutt.Node: its
	// Config.Clock), else time.Now. When to rewrite is timed on the local
	// monotonic clock, never on Now.
	Now func() time.Time
}

// Publication keeps one registration published through a node with the
// verdict of its check: Report writes the record when the verdict changes
// and refreshes it every third of the TTL; if no Report comes for a whole
// TTL (by the local monotonic clock), the record is rewritten with the
// check status CheckExpired, which every reader goes by; Withdraw deletes
// it. Safe for concurrent use.
type Publication struct {
	pub      Publisher
	reg      Registration
	opt      PublishOptions
	mu       sync.Mutex
	verdict  verdict
	written  string      // the value last written
	reported time.Time   // the last Report, monotonic
	silence  *time.Timer // fires a TTL after the last Report
	onExpire func(error) // told of an expiry's write error (nil: ignored)
}

// NewPublication checks reg and opt and returns a publication of reg
// through pub. Nothing is written until Report.
func NewPublication(pub Publisher, reg Registration, opt PublishOptions) (*Publication, error) {
	if pub == nil {
		return nil, errors.New("docker: NewPublication needs a publisher")
	}
	if err := reg.Validate(); err != nil {
		return nil, err
	}
	if opt.TTL == 0 {
		opt.TTL = DefaultTTL
	}
	if opt.TTL < MinTTL {
		return nil, fmt.Errorf("%w: TTL %v is under %v", ErrRegistration, opt.TTL, MinTTL)
	}
	if opt.MaxValueSize <= 0 {
		opt.MaxValueSize = scuttlebutt.MaxValueSize(scuttlebutt.DefaultLANConfig().MaxPacketSize)
	}
	if opt.Now == nil {
		opt.Now = time.Now
		if c, ok := pub.(scuttlebutt.Clock); ok {
			opt.Now = c.Now
		}
	}
	if opt.elapsed == nil {
		opt.elapsed = time.Now
	}
	if reg.Started.IsZero() {
		reg.Started = opt.Now()
	}
	return &Publication{pub: pub, reg: reg, opt: opt, verdict: verdict{ttl: opt.TTL}}, nil
}

// Key returns the key the record is published under.
func (p *Publication) Key() string { return p.reg.Key() }

// TTL returns the TTL in force.
func (p *Publication) TTL() time.Duration { return p.opt.TTL }

// Report takes the result of a check (a zero Result, or one with status
// Starting, before the first verdict) and writes the record if the verdict
// changed, if a third of the TTL passed since the last write, or if it was
// never written. It returns whether it wrote, and the record in force.
func (p *Publication) Report(res health.Result) (bool, Record, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mono := p.opt.elapsed()
	p.reported = mono
	if p.silence == nil {
		p.silence = time.AfterFunc(p.opt.TTL, p.expireIfSilent)
	} else {
		p.silence.Reset(p.opt.TTL)
	}
	old := p.verdict
	if !p.verdict.observe(res, mono, p.opt.Now()) && p.written != "" {
		r, _ := DecodeRecord(p.written)
		return false, r, nil
	}
	r, err := p.write()
	if err != nil {
		p.verdict = old // retried at the next report
		return false, Record{}, err
	}
	return true, r, nil
}

// write writes the record with the verdict in force, under p.mu.
func (p *Publication) write() (Record, error) {
	r := p.reg.record()
	p.verdict.apply(&r, HealthNone)
	v, err := fit(r, p.opt.MaxValueSize)
	if err == nil {
		err = p.pub.UpdateLocal(p.reg.Key(), v)
	}
	if err != nil {
		return Record{}, err
	}
	p.written = v
	r, _ = DecodeRecord(v)
	return r, nil
}

// expireIfSilent marks the record expired if no Report came for a TTL.
func (p *Publication) expireIfSilent() {
	p.mu.Lock()
	defer p.mu.Unlock()
	mono := p.opt.elapsed()
	if p.written == "" || p.verdict.check.Status == CheckExpired {
		return
	}
	if left := p.opt.TTL - mono.Sub(p.reported); left > 0 {
		p.silence.Reset(left) // a Report raced the timer
		return
	}
	p.verdict.expire(mono, p.opt.Now())
	if _, err := p.write(); err != nil && p.onExpire != nil {
		p.onExpire(err)
	}
}

// Stop stops the expiry of a silent record without withdrawing it: for a
// publication replaced by another of the same key.
func (p *Publication) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.silence != nil {
		p.silence.Stop()
	}
	p.written = ""
}

// Withdraw deletes the record.
func (p *Publication) Withdraw() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.silence != nil {
		p.silence.Stop()
	}
	p.written = ""
	p.verdict = verdict{ttl: p.opt.TTL}
	return p.pub.DeleteLocal(p.reg.Key())
}

// Watch publishes reg through pub with the verdict of chk, checked as cfg
// says, until ctx ends; then it withdraws the record and returns. It
// returns at once with an error for a bad registration or configuration.
// The record is published at once with status starting; see Publication
// for when it is rewritten. Errors of writing are passed to onError (nil:
// ignored) and retried at the next check.
//
// This is the library's `scuttlebutt watch`: a Go program publishes its own
// health through the node it embeds, and every node answers Instances(...,
// true) from its local state.
func Watch(ctx context.Context, pub Publisher, reg Registration, chk health.Checker, cfg health.Config, opt PublishOptions, onError func(error)) error {
	p, err := NewPublication(pub, reg, opt)
	if err != nil {
		return err
	}
	if _, err := cfg.WithDefaults(); err != nil {
		return err
	}
	if onError == nil {
		onError = func(error) {}
	}
	p.onExpire = onError
	if _, _, err := p.Report(health.Result{Status: health.Starting}); err != nil {
		if errors.Is(err, ErrRecordTooLarge) {
			return err
		}
		onError(err)
	}
	runErr := health.Run(ctx, chk, cfg, func(res health.Result) {
		if _, _, err := p.Report(res); err != nil {
			onError(err)
		}
	})
	if err := p.Withdraw(); err != nil && runErr == nil && !errors.Is(err, scuttlebutt.ErrClosed) {
		return err
	}
	return runErr
}
