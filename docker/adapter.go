package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// NewClient returns a Docker client configured from the environment
// (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY),
// negotiating the API version with the daemon (API 1.40 and later).
func NewClient() (*client.Client, error) { return client.New(client.FromEnv) }

// Publisher is what the adapter needs of a node: the root package's
// *scuttlebutt.Node satisfies it.
type Publisher interface {
	ID() string
	// UpdateLocal sets one of the node's keys; a no-op if unchanged.
	UpdateLocal(key, value string) error
	DeleteLocal(key string) error
	// State returns a copy of a node's live keys; with ID() it finds the
	// keys an earlier run of the adapter left behind.
	State(nodeID string) (map[string]string, bool)
}

// Options configure an Adapter. The zero value is usable.
type Options struct {
	// HostAddr is the address advertised for published ports. Empty: the
	// host of the publisher's Addr() when it has such a method and the
	// address is a specific one, else the first non-loopback address of
	// this machine, else 127.0.0.1. A port published on one specific host
	// IP is advertised on that IP instead.
	HostAddr string

	// UseContainerAddr advertises the container's own IP address and its
	// private (exposed) ports instead of published ports: for overlay
	// networks and other routable container networks.
	UseContainerAddr bool
	// Network, with UseContainerAddr, names the network whose address is
	// used. Empty: the first network, by name, where the container has one.
	Network string

	// Explicit publishes only containers that opt in with a
	// <prefix>.service or a <prefix>.port.<port>.name label. Otherwise
	// every container with a published port (with UseContainerAddr: an
	// exposed port) is published unless it has <prefix>.ignore=true.
	Explicit bool
	// RequireLabel restricts the adapter to containers carrying this
	// label: "name" or "name=value".
	RequireLabel string
	// LabelPrefix starts the adapter's labels. Default: "scuttlebutt".
	LabelPrefix string

	// Resync is the period of the full reconcile against a list of all
	// running containers. Default: 30 s.
	Resync time.Duration
	// Coalesce is how long container events are gathered before the
	// containers they name are inspected. Default: 100 ms.
	Coalesce time.Duration
	// Grace is how long records are kept while the Docker daemon is
	// unreachable before they are withdrawn. Default: 1 minute. Negative:
	// withdrawn as soon as the daemon is found unreachable.
	Grace time.Duration
	// NoMarkUnknown keeps the records as they were while the daemon is
	// unreachable. Otherwise they are rewritten with state "unknown" (one
	// write per record per outage), which queries rank last and leave out
	// of the healthy ones, until the daemon answers again or Grace ends.
	NoMarkUnknown bool

	// MaxValueSize bounds an encoded record; exported labels, then tags,
	// are dropped from records that would be longer, and records that
	// still are are not published. Default: 888 (MaxPacketSize 1400 - 512).
	MaxValueSize int

	// Logger receives the adapter's logs. Nil: slog.Default().
	Logger *slog.Logger

	// OnCheck, if set, is called after every health check the adapter runs
	// for a container's <prefix>.check.* labels, with the container's short
	// ID and the result (for metrics). It runs on the adapter's worker and
	// must not block.
	OnCheck func(container string, res health.Result)
}

// Adapter keeps a publisher's service keys equal to the running container
// services of one Docker host. See the package documentation.
type Adapter struct {
	pub      Publisher
	cli      *client.Client
	ownedCli bool // made by New: its idle connections are closed when Run returns
	opt      Options
	log      *slog.Logger

	running    atomic.Bool
	reconciles atomic.Int64 // full reconciles done, for tests

	mu      sync.Mutex
	dirty   map[string]struct{}
	unsub   context.CancelFunc // ends the current event subscription
	wake    chan struct{}      // a container was marked dirty
	signals chan signal        // from the event watcher to the worker

	checkResults chan checkResult // from the containers' checks to the worker

	// owned by the worker (Run's goroutine)
	runCtx    context.Context            // Run's; nil when not running
	checks    map[string]*containerCheck // by short container ID
	published map[string]string          // key → value as published
	downSince time.Time                  // zero while the daemon is reachable
	grace     *time.Timer
}

type signal int

const (
	sigSubscribed signal = iota // a new event subscription: reconcile
	sigLost                     // the event stream ended
)

// New returns an adapter publishing the services of the Docker host cli
// talks to through pub. A nil cli means a client made with NewClient, from
// the environment. It does nothing until Run.
func New(pub Publisher, cli *client.Client, opts Options) (*Adapter, error) {
	if pub == nil {
		return nil, errors.New("docker: New needs a publisher")
	}
	owned := false
	if cli == nil {
		c, err := NewClient()
		if err != nil {
			return nil, fmt.Errorf("docker: client from the environment: %w", err)
		}
		cli, owned = c, true
	}
	if opts.LabelPrefix == "" {
		opts.LabelPrefix = "scuttlebutt"
	}
	opts.LabelPrefix = strings.TrimSuffix(opts.LabelPrefix, ".")
	if opts.Resync <= 0 {
		opts.Resync = 30 * time.Second
	}
	if opts.Coalesce == 0 {
		opts.Coalesce = 100 * time.Millisecond
	}
	if opts.Coalesce < 0 {
		opts.Coalesce = 0
	}
	if opts.Grace == 0 {
		opts.Grace = time.Minute
	}
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = 888
	}
	if opts.HostAddr == "" {
		opts.HostAddr = defaultHostAddr(pub)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Adapter{
		pub:      pub,
		cli:      cli,
		ownedCli: owned,
		opt:      opts,
		log:      log.With("component", "docker"),
		dirty:    map[string]struct{}{},
		wake:     make(chan struct{}, 1),
		signals:  make(chan signal, 4),

		checkResults: make(chan checkResult, 16),
		checks:       map[string]*containerCheck{},
	}, nil
}

func defaultHostAddr(pub Publisher) string {
	if a, ok := pub.(interface{ Addr() string }); ok {
		if host, _, err := net.SplitHostPort(a.Addr()); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
				return ip.String()
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// Run publishes the host's container services until ctx ends, then
// withdraws them all and returns nil (or the errors of withdrawing).
//
// It subscribes to the daemon's container events first, then reconciles
// against a full list: records are added and updated, and the keys of an
// earlier run that no container backs any more are deleted. Events only
// mark containers dirty; the dirty set is inspected every Coalesce. A full
// reconcile also runs every Resync and after every resubscription. An event
// stream that ends is resubscribed with backoff; while the daemon is
// unreachable the records stay for Grace, then are withdrawn.
func (a *Adapter) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("docker: adapter already running")
	}
	defer a.running.Store(false)

	a.published = map[string]string{}
	a.downSince = time.Time{}
	if state, ok := a.pub.State(a.pub.ID()); ok {
		for k, v := range state {
			if _, ok := keyContainer(k); ok {
				a.published[k] = v // adopted: kept if still true, deleted at the first reconcile if not
			}
		}
	}

	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watch(wctx)
	}()
	a.runCtx = ctx
	a.work(ctx)
	stop()
	wg.Wait()
	a.stopChecks()
	a.runCtx = nil
	if a.grace != nil {
		a.grace.Stop()
		a.grace = nil
	}
	if a.ownedCli {
		a.cli.Close() // idle connections only: the client stays usable
	}
	return a.withdraw("stopped")
}

// watch keeps an event subscription, feeding the dirty set.
func (a *Adapter) watch(ctx context.Context) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	f := make(client.Filters).Add("type", string(events.ContainerEventType), string(events.NetworkEventType))
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		a.mu.Lock()
		a.unsub = cancel
		a.mu.Unlock()
		began := time.Now()
		res := a.cli.Events(sctx, client.EventsListOptions{Filters: f})
		// Subscribed (or failed): reconcile now, so nothing that happened
		// before the subscription is missed.
		a.send(ctx, sigSubscribed)
		err := a.read(sctx, res)
		cancel()
		if ctx.Err() != nil {
			return
		}
		a.send(ctx, sigLost)
		if time.Since(began) > 10*time.Second {
			backoff = minBackoff
		}
		a.log.Debug("event stream ended, resubscribing", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (a *Adapter) send(ctx context.Context, s signal) {
	select {
	case a.signals <- s:
	case <-ctx.Done():
	}
}

// read takes events as fast as they come (the daemon drops those of slow
// subscribers), only marking containers dirty.
func (a *Adapter) read(ctx context.Context, res client.EventsResult) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-res.Err:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return err
		case m := <-res.Messages:
			if id := eventContainer(m); id != "" {
				a.markDirty(id)
			}
		}
	}
}

// eventContainer returns the container an event may change the services
// of, or "".
func eventContainer(m events.Message) string {
	switch m.Type {
	case events.ContainerEventType:
		switch m.Action {
		case events.ActionStart, events.ActionRestart, events.ActionStop, events.ActionKill,
			events.ActionDie, events.ActionOOM, events.ActionDestroy, events.ActionRemove,
			events.ActionPause, events.ActionUnPause, events.ActionRename, events.ActionUpdate:
			return m.Actor.ID
		}
		if strings.HasPrefix(string(m.Action), string(events.ActionHealthStatus)) {
			return m.Actor.ID
		}
	case events.NetworkEventType:
		if m.Action == events.ActionConnect || m.Action == events.ActionDisconnect {
			return m.Actor.Attributes["container"]
		}
	}
	return ""
}

func (a *Adapter) markDirty(id string) {
	a.mu.Lock()
	a.dirty[id] = struct{}{}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Adapter) takeDirty() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]string, 0, len(a.dirty))
	for id := range a.dirty {
		ids = append(ids, id)
	}
	clear(a.dirty)
	return ids
}

// resubscribe ends the current event subscription, which the watcher then
// renews: for a daemon that stopped answering without closing the stream.
func (a *Adapter) resubscribe() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unsub != nil {
		a.unsub()
	}
}

// work does all the inspecting and publishing, until ctx ends.
func (a *Adapter) work(ctx context.Context) {
	resync := time.NewTicker(a.opt.Resync)
	defer resync.Stop()
	var (
		coalesce  *time.Timer
		coalesceC <-chan time.Time
	)
	defer func() {
		if coalesce != nil {
			coalesce.Stop()
		}
	}()
	for {
		var graceC <-chan time.Time
		if a.grace != nil {
			graceC = a.grace.C
		}
		select {
		case <-ctx.Done():
			return
		case s := <-a.signals:
			switch s {
			case sigSubscribed:
				a.reconcile(ctx)
			case sigLost:
				// The daemon may be gone, or the stream only broke: a
				// reconcile tells which (and marks the daemon down).
				a.reconcile(ctx)
			}
		case <-resync.C:
			a.reconcile(ctx)
		case <-a.wake:
			if coalesceC == nil {
				coalesce = time.NewTimer(a.opt.Coalesce)
				coalesceC = coalesce.C
			}
		case <-coalesceC:
			coalesce, coalesceC = nil, nil
			a.syncDirty(ctx)
		case cr := <-a.checkResults:
			a.onCheckResult(cr)
		case <-graceC:
			a.grace = nil
			if !a.downSince.IsZero() {
				a.withdraw(fmt.Sprintf("daemon unreachable for %v", time.Since(a.downSince).Round(time.Millisecond)))
			}
		}
	}
}

// reconcile makes the published keys equal to what a full list of the
// running containers says.
func (a *Adapter) reconcile(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opts := client.ContainerListOptions{}
	if a.opt.RequireLabel != "" {
		opts.Filters = make(client.Filters).Add("label", a.opt.RequireLabel)
	}
	list, err := a.cli.ContainerList(lctx, opts)
	if err != nil {
		a.down(ctx, err)
		return
	}
	want := map[string]string{}
	for _, c := range list.Items {
		if !a.candidate(c) {
			continue
		}
		res, err := a.cli.ContainerInspect(lctx, c.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue // gone since the list
		}
		if err != nil {
			a.down(ctx, err)
			return
		}
		for k, v := range a.records(res.Container) {
			want[k] = v
		}
	}
	a.up()
	live := map[string]bool{}
	for k := range want {
		if cid, ok := keyContainer(k); ok {
			live[cid] = true
		}
	}
	a.pruneChecks(live)
	a.apply(want, func(string) bool { return true })
	a.reconciles.Add(1)
}

// candidate tells from a list entry whether the container may have
// services, sparing an inspect of the others.
func (a *Adapter) candidate(c container.Summary) bool {
	p := a.opt.LabelPrefix
	if c.Labels[p+".ignore"] == "true" {
		return false
	}
	if a.opt.Explicit && !optedIn(c.Labels, p) {
		return false
	}
	if a.opt.UseContainerAddr {
		return true
	}
	for _, port := range c.Ports {
		if port.PublicPort != 0 {
			return true
		}
	}
	return false
}

func optedIn(labels map[string]string, p string) bool {
	if labels[p+".service"] != "" {
		return true
	}
	for k := range labels {
		if strings.HasPrefix(k, p+".port.") && strings.HasSuffix(k, ".name") {
			return true
		}
	}
	return false
}

// syncDirty inspects the containers events marked dirty and updates their
// keys.
func (a *Adapter) syncDirty(ctx context.Context) {
	ids := a.takeDirty()
	for i, id := range ids {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := a.cli.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
		cancel()
		want := map[string]string{}
		switch {
		case err == nil:
			want = a.records(res.Container)
		case cerrdefs.IsNotFound(err):
			// removed: withdraw
			a.stopCheck(shortID(id))
		default:
			// Kept dirty, without waking the worker (no retry loop while
			// the daemon is away): retried with the next event, and
			// covered by the next full reconcile anyway.
			a.mu.Lock()
			for _, id := range ids[i:] {
				a.dirty[id] = struct{}{}
			}
			a.mu.Unlock()
			a.log.Debug("inspect failed", "container", shortID(id), "err", err)
			return
		}
		short := shortID(id)
		a.apply(want, func(key string) bool {
			cid, _ := keyContainer(key)
			return cid == short
		})
	}
}

// apply writes the keys of want that differ from what is published, and
// deletes the published keys in scope that want lacks.
func (a *Adapter) apply(want map[string]string, inScope func(key string) bool) {
	for k, v := range want {
		if old, ok := a.published[k]; ok && old == v {
			continue
		}
		if err := a.pub.UpdateLocal(k, v); err != nil {
			a.log.Warn("publishing a service", "key", k, "err", err)
			continue
		}
		a.published[k] = v
		a.log.Debug("published", "key", k, "value", v)
	}
	for k := range a.published {
		if _, ok := want[k]; ok || !inScope(k) {
			continue
		}
		if err := a.pub.DeleteLocal(k); err != nil {
			a.log.Warn("withdrawing a service", "key", k, "err", err)
			continue
		}
		delete(a.published, k)
		a.log.Debug("withdrawn", "key", k)
	}
}

// down notes that the daemon is unreachable. The event stream is renewed
// too, in case the daemon stopped answering without closing it.
func (a *Adapter) down(ctx context.Context, err error) {
	if ctx.Err() != nil || !a.downSince.IsZero() {
		return
	}
	a.resubscribe()
	a.downSince = time.Now()
	a.log.Warn("Docker daemon unreachable; keeping the records for the grace period", "err", err, "grace", a.opt.Grace)
	if a.opt.Grace < 0 {
		a.withdraw("daemon unreachable")
		return
	}
	a.grace = time.NewTimer(a.opt.Grace)
	if !a.opt.NoMarkUnknown {
		for k, v := range a.published {
			r, err := DecodeRecord(v)
			if err != nil || r.State == StateUnknown {
				continue
			}
			r.State = StateUnknown
			nv := encodeRecord(r)
			if err := a.pub.UpdateLocal(k, nv); err == nil {
				a.published[k] = nv
			}
		}
	}
}

// up notes that the daemon answers.
func (a *Adapter) up() {
	if a.downSince.IsZero() {
		return
	}
	a.log.Info("Docker daemon reachable again", "after", time.Since(a.downSince).Round(time.Millisecond))
	a.downSince = time.Time{}
	if a.grace != nil {
		a.grace.Stop()
		a.grace = nil
	}
}

// withdraw deletes every published key.
func (a *Adapter) withdraw(why string) error {
	var errs []error
	n := 0
	for k := range a.published {
		if err := a.pub.DeleteLocal(k); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(a.published, k)
		n++
	}
	if n > 0 {
		a.log.Info("services withdrawn", "count", n, "why", why)
	}
	return errors.Join(errs...)
}

// records returns the service keys and values of one inspected container,
// with the verdict of its check if its labels ask for one (starting or
// stopping the check as needed). Only the worker calls it.
func (a *Adapter) records(c container.InspectResponse) map[string]string {
	base := a.baseRecords(c)
	cid := shortID(c.ID)
	p := a.opt.LabelPrefix
	if len(base) == 0 || !hasCheckLabels(c.Config.Labels, p) {
		a.stopCheck(cid)
		out := map[string]string{}
		for k, r := range base {
			v, err := fit(r, a.opt.MaxValueSize)
			if err != nil {
				a.log.Warn("service record too long, not published", "container", r.Container, "err", err)
				continue
			}
			out[k] = v
		}
		return out
	}
	spec, err := parseCheck(c.Config.Labels, p, a.ports(c))
	cc := a.ensureCheck(cid, spec, err)
	cc.base = base
	return a.encodeChecked(cc)
}

// baseRecords returns the records of one inspected container, by key,
// without a check's verdict.
func (a *Adapter) baseRecords(c container.InspectResponse) map[string]Record {
	out := map[string]Record{}
	if c.State == nil || !c.State.Running || c.State.Restarting || c.Config == nil {
		return out
	}
	p := a.opt.LabelPrefix
	labels := c.Config.Labels
	if labels[p+".ignore"] == "true" {
		return out
	}
	if a.opt.Explicit && !optedIn(labels, p) {
		return out
	}
	if !hasLabel(labels, a.opt.RequireLabel) {
		return out
	}

	base := labels[p+".service"]
	if base == "" {
		base = imageName(c.Config.Image)
	}
	var tags []string
	for _, t := range strings.Split(labels[p+".tags"], ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	var exported map[string]string
	for _, l := range strings.Split(labels[p+".export"], ",") {
		l = strings.TrimSpace(l)
		if v, ok := labels[l]; ok && l != "" {
			if exported == nil {
				exported = map[string]string{}
			}
			exported[l] = v
		}
	}
	health := HealthNone
	if c.State.Health != nil && c.State.Health.Status != "" {
		health = string(c.State.Health.Status)
	}
	state := StateRunning
	if c.State.Paused {
		state = StatePaused
	}
	var started int64
	if t, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil {
		started = t.Unix()
	}

	ports := a.ports(c)
	for _, pt := range ports {
		num := strconv.Itoa(int(pt.private.Num()))
		if labels[p+".port."+num+".ignore"] == "true" {
			continue
		}
		name := labels[p+".port."+num+".name"]
		if name == "" {
			name = base
			if len(ports) > 1 {
				name += "-" + num
			}
		}
		name = sanitize(name)
		if name == "" {
			continue
		}
		r := Record{
			V:         RecordVersion,
			Service:   name,
			Container: shortID(c.ID),
			Name:      strings.TrimPrefix(c.Name, "/"),
			Image:     c.Config.Image,
			Host:      pt.host,
			Port:      pt.port,
			Private:   int(pt.private.Num()),
			Proto:     string(pt.private.Proto()),
			Tags:      tags,
			Labels:    exported,
			Health:    health,
			State:     state,
			Started:   started,
		}
		if v, ok := labels[p+".maintenance"]; ok {
			r.Maint = MaintLabelReason(v)
		}
		out[serviceKey(name, c.ID, r.Private, r.Proto)] = r
	}
	return out
}

type portAddr struct {
	private network.Port
	host    string
	port    int
}

// ports returns the addresses of a container's services, by private port.
func (a *Adapter) ports(c container.InspectResponse) []portAddr {
	var out []portAddr
	if c.NetworkSettings == nil {
		return nil
	}
	if a.opt.UseContainerAddr {
		ip := containerIP(c.NetworkSettings.Networks, a.opt.Network)
		if ip == "" {
			return nil
		}
		seen := map[network.Port]bool{}
		for p := range c.Config.ExposedPorts {
			seen[p] = true
		}
		for p := range c.NetworkSettings.Ports {
			seen[p] = true
		}
		for p := range seen {
			out = append(out, portAddr{private: p, host: ip, port: int(p.Num())})
		}
	} else {
		for p, bindings := range c.NetworkSettings.Ports {
			for _, b := range bindings {
				n, err := strconv.Atoi(b.HostPort)
				if err != nil || n <= 0 {
					continue
				}
				host := a.opt.HostAddr
				if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
					host = b.HostIP.String()
				}
				out = append(out, portAddr{private: p, host: host, port: n})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].private.Num() != out[j].private.Num() {
			return out[i].private.Num() < out[j].private.Num()
		}
		return out[i].private.Proto() < out[j].private.Proto()
	})
	return out
}

func containerIP(nets map[string]*network.EndpointSettings, want string) string {
	if want != "" {
		if e := nets[want]; e != nil && e.IPAddress.IsValid() {
			return e.IPAddress.String()
		}
		return ""
	}
	names := make([]string, 0, len(nets))
	for n := range nets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if e := nets[n]; e != nil && e.IPAddress.IsValid() {
			return e.IPAddress.String()
		}
	}
	return ""
}

func hasLabel(labels map[string]string, want string) bool {
	if want == "" {
		return true
	}
	k, v, withValue := strings.Cut(want, "=")
	got, ok := labels[k]
	return ok && (!withValue || got == v)
}

// imageName returns the name of an image reference without registry,
// path, tag or digest: "registry:5000/team/web:1.2@sha256:…" → "web".
func imageName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	ref = path.Base(ref)
	ref, _, _ = strings.Cut(ref, ":")
	return ref
}

// sanitize reduces a service name to at most 64 bytes of [A-Za-z0-9._-].
func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
