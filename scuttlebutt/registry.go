package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/registry"
)

// The agent's registry (-registry, -servers, -exec): heartbeats, joins
// through live entries, role choice, and the program it runs.

// Keys this node publishes when it has a role (-servers).
const (
	roleKey      = "role"      // "server" or "agent"
	bootstrapKey = "bootstrap" // "true" on the server that bootstrapped
)

// Timeouts of registry calls.
const (
	registryCallTimeout  = 30 * time.Second // one call of the loop
	registryLeaveTimeout = 5 * time.Second  // release and delete on leave
	registryMinRetry     = time.Second      // first retry after a failure
)

// registryFlags are the flags of the registry and of -exec.
type registryFlags struct {
	url      string
	expiry   time.Duration
	servers  int
	exec     string
	execStop time.Duration
	reg      registry.Registry // opened by check
}

func (f *registryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "registry", "", "`URL` of a registry to find peers (and choose roles) through: s3://BUCKET/PREFIX, file:///PATH, dns://NAME[:PORT] or dns+srv://NAME")
	fs.DurationVar(&f.expiry, "registry-expiry", registry.DefaultExpiry, "`age` at which a registry entry expires; this node's is rewritten every half of it")
	fs.IntVar(&f.servers, "servers", 0, "desired number of servers `N`: with -registry, the first N nodes to claim a slot are servers (the first bootstraps), the others agents; 0: no roles")
	fs.StringVar(&f.exec, "exec", "", "`command` run with /bin/sh -c once the role is chosen, with SCUTTLEBUTT_ROLE, SCUTTLEBUTT_BOOTSTRAP and SCUTTLEBUTT_SERVERS set; restarted if it exits, stopped on leave")
	fs.DurationVar(&f.execStop, "exec-stop-timeout", 10*time.Second, "`time` the -exec command has to exit after SIGTERM before it is killed")
}

// check validates the flags and opens the registry (no I/O but reading the
// AWS configuration files).
func (f *registryFlags) check() error {
	switch {
	case f.expiry < time.Second:
		return fmt.Errorf("-registry-expiry %s: want at least 1s (the default is %s)", f.expiry, registry.DefaultExpiry)
	case f.servers < 0:
		return fmt.Errorf("-servers %d: want 0 (no roles) or more", f.servers)
	case f.servers > 0 && f.url == "":
		return errors.New("-servers needs -registry: roles are claimed in the registry")
	case f.execStop <= 0:
		return fmt.Errorf("-exec-stop-timeout %s: want more than 0", f.execStop)
	}
	if f.url == "" {
		return nil
	}
	reg, err := registry.Open(context.Background(), f.url)
	if err != nil {
		return fmt.Errorf("-registry: %w", err)
	}
	if _, ok := reg.(*registry.DNS); ok && f.servers > 0 {
		return fmt.Errorf("-servers needs a registry that can be written (s3:// or file://): %s is read-only", f.url)
	}
	f.reg = reg
	return nil
}

// registrar keeps this node in the registry: it chooses the role, writes
// heartbeats, joins through live entries while the node is alone, purges
// expired entries, and runs -exec.
type registrar struct {
	a      *agent
	f      registryFlags
	log    *slog.Logger
	stderr io.Writer
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	decision registry.Decision // Role "" without -servers
	sup      *supervisor
	badSeen  map[string]string // bad entries already logged: key → error
}

// startRegistrar starts the registry loop and -exec, if configured; nil if
// neither is.
func startRegistrar(a *agent, f registryFlags, log *slog.Logger, stderr io.Writer) *registrar {
	if f.reg == nil && f.exec == "" {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &registrar{a: a, f: f, log: log, stderr: stderr, cancel: cancel, done: make(chan struct{}),
		badSeen: map[string]string{}, decision: registry.Decision{Slot: -1}}
	go func() {
		defer close(r.done)
		r.run(ctx)
	}()
	return r
}

// self is this node's entry now, stamped by its clock (shown only: ages
// are the store's).
func (r *registrar) self() registry.Entry {
	r.mu.Lock()
	d := r.decision
	r.mu.Unlock()
	return registry.Entry{ID: r.a.node.ID(), Addr: r.a.node.Addr(), Role: d.Role, Bootstrap: d.Bootstrap, Time: r.a.node.Now()}
}

func (r *registrar) run(ctx context.Context) {
	if r.f.reg == nil { // -exec alone
		r.startExec()
		<-ctx.Done()
		return
	}
	r.log.Info("using the registry", "registry", r.f.url, "expiry", r.f.expiry, "servers", r.f.servers)
	if r.f.servers > 0 && !r.choose(ctx) {
		return
	}
	r.startExec()

	var (
		beatRetry = newBackoff(registryMinRetry, r.f.expiry/2)
		joinRetry = newBackoff(registryMinRetry, r.f.expiry/2)
		nextBeat  time.Time // zero: now
		nextPurge time.Time
		waited    bool // "no live entry yet" was logged
	)
	for {
		now := time.Now()
		if !now.Before(nextBeat) {
			if err := r.beat(ctx, now); err != nil {
				if ctx.Err() != nil {
					return
				}
				d := beatRetry.next()
				r.log.Warn("cannot write this node's heartbeat to the registry; retrying", "in", d, "err", err)
				nextBeat = now.Add(d)
			} else {
				beatRetry.reset()
				nextBeat = now.Add(r.f.expiry / 2)
			}
		}
		alone := r.alone()
		purge := alone || (!now.Before(nextPurge) && r.purger())
		wake := nextBeat
		if alone || purge {
			entries, err := r.list(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				d := joinRetry.next()
				r.log.Warn("cannot read the registry; retrying", "in", d, "err", err)
				wake = minTime(wake, now.Add(d))
			default:
				if purge {
					nextPurge = now.Add(r.f.expiry)
					r.purge(ctx, entries, now)
				}
				if alone {
					addrs := slices.DeleteFunc(registry.JoinAddrs(entries, r.a.node.ID(), now, r.f.expiry),
						func(a string) bool { return a == r.a.node.Addr() })
					switch {
					case len(addrs) == 0 && !waited:
						r.log.Info("no other live node in the registry yet: waiting for others to join this one", "id", r.a.node.ID(), "addr", r.a.node.Addr())
						waited = true
					case len(addrs) > 0:
						r.join(addrs)
					}
					if r.alone() {
						wake = minTime(wake, now.Add(joinRetry.next()))
					} else {
						joinRetry.reset()
					}
				}
			}
		}
		if !nextPurge.IsZero() {
			wake = minTime(wake, nextPurge)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(wake)):
		}
	}
}

// choose chooses the role, retrying until it succeeds or ctx ends.
func (r *registrar) choose(ctx context.Context) bool {
	retry := newBackoff(registryMinRetry, max(r.f.expiry/2, registryMinRetry))
	for {
		cctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
		d, err := registry.Choose(cctx, r.f.reg, r.self(), r.f.servers, r.f.expiry)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			r.mu.Lock()
			r.decision = d
			r.mu.Unlock()
			var servers []string
			for _, e := range d.Servers {
				servers = append(servers, e.ID+"@"+e.Addr)
			}
			r.log.Info("role chosen", "role", d.Role, "bootstrap", d.Bootstrap, "slot", d.Slot, "servers", servers)
			r.publishRole(d)
			return true
		}
		delay := retry.next()
		r.log.Warn("cannot choose a role: the registry is not usable; the agent runs without a role and retries", "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}

// publishRole sets the role keys of this node.
func (r *registrar) publishRole(d registry.Decision) {
	if err := r.a.pub.UpdateLocal(roleKey, d.Role); err != nil {
		r.log.Error("publishing the role", "err", err)
	}
	if d.Bootstrap {
		if err := r.a.pub.UpdateLocal(bootstrapKey, "true"); err != nil {
			r.log.Error("publishing the role", "err", err)
		}
	} else if err := r.a.pub.DeleteLocal(bootstrapKey); err != nil {
		r.log.Error("publishing the role", "err", err)
	}
}

// beat writes the heartbeat and renews the slot of a server.
func (r *registrar) beat(ctx context.Context, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	self := r.self()
	if err := r.f.reg.Put(ctx, self); err != nil {
		if errors.Is(err, registry.ErrUnsupported) {
			return nil // DNS seeds: nothing to write
		}
		return err
	}
	r.mu.Lock()
	d := r.decision
	r.mu.Unlock()
	err := registry.Renew(ctx, r.f.reg, self, d, r.f.expiry)
	if errors.Is(err, registry.ErrTaken) {
		r.log.Error("this server lost its slot: it was silent for longer than -registry-expiry and another node took the slot over; "+
			"it keeps running as a server, so the cluster may have one server more than -servers until it restarts",
			"slot", d.Slot, "expiry", r.f.expiry)
		return nil
	}
	return err
}

// list reads the registry and logs entries that do not parse, once each.
func (r *registrar) list(ctx context.Context) ([]registry.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	entries, err := r.f.reg.List(ctx)
	if err != nil && !errors.Is(err, registry.ErrBadEntry) {
		return nil, err
	}
	r.logBad(err)
	return entries, nil
}

func (r *registrar) logBad(err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	for _, e := range errs {
		var ee *registry.EntryError
		if !errors.As(e, &ee) {
			continue
		}
		r.mu.Lock()
		seen := r.badSeen[ee.Key] == ee.Error()
		r.badSeen[ee.Key] = ee.Error()
		r.mu.Unlock()
		if !seen {
			r.log.Warn("a registry entry does not parse; skipping it", "entry", ee.Key, "err", ee.Err,
				"hint", "delete it, or check what writes it (another version of scuttlebutt, or something else using the same prefix)")
		}
	}
}

// purge deletes expired heartbeats.
func (r *registrar) purge(ctx context.Context, entries []registry.Entry, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	n, err := registry.Purge(ctx, r.f.reg, entries, now, r.f.expiry)
	if n > 0 {
		var ids []string
		for _, e := range entries {
			if !e.IsSlot() && !e.Live(now, r.f.expiry) {
				ids = append(ids, e.ID)
			}
		}
		r.log.Info("purged expired registry entries", "count", n, "ids", ids)
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("cannot purge expired registry entries", "err", err)
	}
}

// join seeds the node with the addresses of live entries: it tries them one
// after the other until one answers.
func (r *registrar) join(addrs []string) {
	r.log.Info("joining through the registry", "addrs", addrs)
	err := r.a.node.Seed(addrs)
	switch {
	case err == nil:
		r.log.Info("joined through the registry")
	case errors.Is(err, scuttlebutt.ErrClosed):
	default:
		r.log.Warn("no live registry entry answered; retrying. Check that those agents run, that their -bind port (UDP and TCP) is open, "+
			"and that -cluster matches", "addrs", addrs, "err", err)
	}
}

// alone tells whether the node knows no live peer.
func (r *registrar) alone() bool {
	for _, ni := range r.a.node.Nodes() {
		if !ni.Local && ni.Status == scuttlebutt.StatusAlive {
			return false
		}
	}
	return true
}

// purger tells whether this node purges every expiry: the live node with
// the lowest ID, by gossip, so that one node of the cluster lists the
// registry for it, not all of them. (A node that is alone, joining, purges
// whenever it lists.)
func (r *registrar) purger() bool {
	self := r.a.node.ID()
	for _, ni := range r.a.node.Nodes() {
		if !ni.Local && ni.Status == scuttlebutt.StatusAlive && ni.ID < self {
			return false
		}
	}
	return true
}

// startExec starts -exec, if set.
func (r *registrar) startExec() {
	if r.f.exec == "" {
		return
	}
	sup := startSupervisor(r.f.exec, r.execEnv, r.f.execStop, r.log, r.stderr)
	r.mu.Lock()
	r.sup = sup
	r.mu.Unlock()
}

// execEnv is what -exec gets in its environment besides the agent's: the
// role, and the other live servers as the registry lists them now.
func (r *registrar) execEnv() []string {
	r.mu.Lock()
	d := r.decision
	r.mu.Unlock()
	servers := d.Servers
	if r.f.reg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), registryCallTimeout)
		if es, err := r.list(ctx); err == nil {
			servers = registry.Servers(es, r.a.node.ID(), time.Now(), r.f.expiry)
		}
		cancel()
	}
	var addrs, hosts []string
	for _, e := range servers {
		addrs = append(addrs, e.Addr)
		if h, _, err := net.SplitHostPort(e.Addr); err == nil && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return []string{
		envPrefix + "ROLE=" + d.Role,
		envPrefix + "BOOTSTRAP=" + strconv.FormatBool(d.Bootstrap),
		envPrefix + "SERVERS=" + strings.Join(addrs, ","),
		envPrefix + "SERVER_HOSTS=" + strings.Join(hosts, ","),
		envPrefix + "ID=" + r.a.node.ID(),
	}
}

// stop ends the loop and -exec, then releases the slot and deletes the
// heartbeat, so that nobody joins through this node or waits for its slot.
func (r *registrar) stop() {
	r.cancel()
	<-r.done
	r.mu.Lock()
	sup := r.sup
	d := r.decision
	r.mu.Unlock()
	if sup != nil {
		sup.stop()
	}
	if r.f.reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryLeaveTimeout)
	defer cancel()
	self := r.self()
	if d.Role == registry.RoleServer {
		if err := r.f.reg.Release(ctx, d.Slot, self); err != nil && !errors.Is(err, registry.ErrTaken) {
			r.log.Warn("cannot release this server's slot; it expires after -registry-expiry", "slot", d.Slot, "err", err)
		}
	}
	switch err := r.f.reg.Delete(ctx, self); {
	case errors.Is(err, registry.ErrUnsupported): // DNS seeds: nothing was written
	case err != nil:
		r.log.Warn("cannot delete this node's heartbeat from the registry; it expires after -registry-expiry", "err", err)
	default:
		r.log.Info("removed this node from the registry")
	}
}

// backoff doubles a delay from min to max.
type backoff struct{ cur, min, max time.Duration }

func newBackoff(lo, hi time.Duration) *backoff {
	return &backoff{min: lo, max: max(lo, hi)}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
