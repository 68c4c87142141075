package docker

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// This file holds the health checks the adapter runs itself, from a
// container's labels:
//
//	<prefix>.check.http=/health    GET http://<published address>/health: 2xx passes
//	<prefix>.check.tcp=true        a TCP connect to the published address
//	<prefix>.check.port=8080       the private port whose published address is checked
//	                               (default: the lowest published TCP port)
//	<prefix>.check.interval=5s     between checks (default 5 s)
//	<prefix>.check.timeout=2s      of one check (default: the interval, at most 10 s)
//	<prefix>.check.rise=1          successes in a row that make it passing (default 1)
//	<prefix>.check.fall=2          failures in a row that make it failing (default 2)
//	<prefix>.check.ttl=30s         of the records (default DefaultTTL, at least 3 intervals)
//
// The verdict goes into every record of the container (Record.Check, and
// Record.Health combined with Docker's own health).

// Default thresholds of a check from labels and of `scuttlebutt watch`:
// passing at the first success (a start-up lease is released as soon as the
// service answers), failing after two failures in a row (one slow answer
// does not flip it).
const (
	DefaultRise = 1
	DefaultFall = 2
)

// checkSpec is a container's check as its labels describe it.
type checkSpec struct {
	kind   string // "http" or "tcp"
	target string // URL or host:port
	cfg    health.Config
	ttl    time.Duration
}

// hasCheckLabels tells whether a container asks for a check.
func hasCheckLabels(labels map[string]string, p string) bool {
	for k := range labels {
		if strings.HasPrefix(k, p+".check.") {
			return true
		}
	}
	return false
}

// parseCheck reads a container's check labels against its published
// addresses (sorted by private port, as ports returns them).
func parseCheck(labels map[string]string, p string, ports []portAddr) (checkSpec, error) {
	l := func(name string) string { return strings.TrimSpace(labels[p+".check."+name]) }
	bad := func(name, why string) error {
		return fmt.Errorf("label %s.check.%s=%q: %s", p, name, labels[p+".check."+name], why)
	}
	var s checkSpec
	s.cfg.Rise, s.cfg.Fall = DefaultRise, DefaultFall
	for name, d := range map[string]*time.Duration{"interval": &s.cfg.Interval, "timeout": &s.cfg.Timeout, "ttl": &s.ttl} {
		if v := l(name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return s, bad(name, "want a duration such as 5s")
			}
			*d = x
		}
	}
	for name, n := range map[string]*int{"rise": &s.cfg.Rise, "fall": &s.cfg.Fall} {
		if v := l(name); v != "" {
			x, err := strconv.Atoi(v)
			if err != nil || x < 1 || x > 100 {
				return s, bad(name, "want a whole number from 1 to 100")
			}
			*n = x
		}
	}
	cfg, err := s.cfg.WithDefaults()
	if err != nil {
		return s, fmt.Errorf("labels %s.check.interval and .timeout: %v", p, err)
	}
	s.cfg = cfg
	if s.ttl == 0 {
		s.ttl = max(DefaultTTL, 3*cfg.Interval)
	}
	if s.ttl < max(MinTTL, 2*cfg.Interval) {
		return s, bad("ttl", fmt.Sprintf("want at least %v and twice the interval", MinTTL))
	}

	var addr *portAddr
	if v := l("port"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return s, bad("port", "want a private port number of the container")
		}
		for i := range ports {
			if int(ports[i].private.Num()) == n && ports[i].private.Proto() == "tcp" {
				addr = &ports[i]
				break
			}
		}
		if addr == nil {
			return s, bad("port", "no published TCP port of the container has this private port")
		}
	} else {
		for i := range ports {
			if ports[i].private.Proto() == "tcp" {
				addr = &ports[i]
				break
			}
		}
		if addr == nil {
			return s, fmt.Errorf("labels %s.check.*: the container has no published TCP port to check", p)
		}
	}
	hostPort := net.JoinHostPort(addr.host, strconv.Itoa(addr.port))
	path, tcp := l("http"), l("tcp")
	switch {
	case path != "" && tcp != "":
		return s, fmt.Errorf("labels %s.check.http and %s.check.tcp: give one of them", p, p)
	case path != "":
		if !strings.HasPrefix(path, "/") {
			return s, bad("http", "want a path starting with /, such as /health")
		}
		s.kind, s.target = "http", "http://"+hostPort+path
	case tcp != "":
		if tcp != "true" {
			return s, bad("tcp", "want true")
		}
		s.kind, s.target = "tcp", hostPort
	default:
		return s, fmt.Errorf("labels %s.check.*: a %s.check.http or %s.check.tcp label is needed", p, p, p)
	}
	return s, nil
}

func (s checkSpec) checker() health.Checker {
	if s.kind == "tcp" {
		return health.TCP{Addr: s.target}
	}
	return health.HTTP{URL: s.target}
}

// containerCheck is the check of one container, owned by the worker.
type containerCheck struct {
	cid     string
	spec    checkSpec
	err     error // bad labels: no check runs; the records say why
	cancel  context.CancelFunc
	done    chan struct{}
	verdict verdict
	base    map[string]Record // the container's records without the verdict, as last inspected
}

// checkResult is a result of a container's check, for the worker.
type checkResult struct {
	cc  *containerCheck
	res health.Result
}

// ensureCheck returns the check of a container for spec (or a bad-label
// error), starting it, or restarting it if the labels or the address
// changed.
func (a *Adapter) ensureCheck(cid string, spec checkSpec, specErr error) *containerCheck {
	if cc := a.checks[cid]; cc != nil {
		if cc.spec == spec && fmt.Sprint(cc.err) == fmt.Sprint(specErr) {
			return cc
		}
		a.stopCheck(cid)
	}
	cc := &containerCheck{cid: cid, spec: spec, err: specErr, verdict: verdict{ttl: spec.ttl}, done: make(chan struct{})}
	if specErr != nil {
		a.log.Warn("bad health check labels; the container's records say failing", "container", cid, "err", specErr)
		cc.verdict = verdict{ttl: time.Hour, check: Check{Status: string(health.Failing), Output: specErr.Error()}}
		close(cc.done)
		a.checks[cid] = cc
		return cc
	}
	cc.verdict.observe(health.Result{Status: health.Starting}, time.Now(), a.now())
	a.checks[cid] = cc
	if a.runCtx == nil { // not running (unit tests of records): no check
		close(cc.done)
		return cc
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	cc.cancel = cancel
	chk := spec.checker()
	go func() {
		defer close(cc.done)
		health.Run(ctx, chk, spec.cfg, func(res health.Result) {
			select {
			case a.checkResults <- checkResult{cc: cc, res: res}:
			case <-ctx.Done():
			}
		})
	}()
	a.log.Debug("health check started", "container", cid, "check", spec.kind, "target", spec.target, "interval", spec.cfg.Interval)
	return cc
}

// stopCheck stops a container's check, if any, and waits for it.
func (a *Adapter) stopCheck(cid string) {
	cc := a.checks[cid]
	if cc == nil {
		return
	}
	delete(a.checks, cid)
	if cc.cancel != nil {
		cc.cancel()
	}
	<-cc.done
}

// pruneChecks stops the checks of containers not in keep.
func (a *Adapter) pruneChecks(keep map[string]bool) {
	for cid := range a.checks {
		if !keep[cid] {
			a.stopCheck(cid)
		}
	}
}

// stopChecks stops every check.
func (a *Adapter) stopChecks() { a.pruneChecks(nil) }

// onCheckResult takes a check's result on the worker: the records are
// rewritten when the verdict changed or the TTL needs a refresh. While the
// daemon is unreachable nothing is written (the records say "unknown").
func (a *Adapter) onCheckResult(cr checkResult) {
	cc := cr.cc
	if a.checks[cc.cid] != cc {
		return // stopped or replaced since
	}
	if a.opt.OnCheck != nil {
		a.opt.OnCheck(cc.cid, cr.res)
	}
	if cr.res.Changed {
		a.log.Info("health check verdict", "container", cc.cid, "status", string(cr.res.Status), "output", cr.res.Output)
	}
	if !cc.verdict.observe(cr.res, time.Now(), a.now()) || !a.downSince.IsZero() {
		return
	}
	a.apply(a.encodeChecked(cc), func(key string) bool {
		cid, _ := keyContainer(key)
		return cid == cc.cid
	})
}

// now returns the wall-clock time of the records: the publisher's (a
// *scuttlebutt.Node: its Config.Clock), else the host's.
func (a *Adapter) now() time.Time {
	if c, ok := a.pub.(scuttlebutt.Clock); ok {
		return c.Now()
	}
	return time.Now()
}

// encodeChecked returns a container's records with its check's verdict.
func (a *Adapter) encodeChecked(cc *containerCheck) map[string]string {
	out := map[string]string{}
	for k, r := range cc.base {
		cc.verdict.apply(&r, r.Health)
		if cc.err != nil {
			r.Expires = 0 // no check runs: nothing to refresh
		}
		v, err := fit(r, a.opt.MaxValueSize)
		if err != nil {
			a.log.Warn("service record too long, not published", "container", r.Container, "err", err)
			continue
		}
		out[k] = v
	}
	return out
}
