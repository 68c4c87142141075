package docker

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// memPub is an in-memory Publisher: a fake of this package's interface.
type memPub struct {
	id, addr string

	mu      sync.Mutex
	keys    map[string]string
	writes  int      // UpdateLocal and DeleteLocal calls that changed something
	history []change // those changes, in order
}

// change is one write of a memPub: a delete when !set.
type change struct {
	key, value string
	set        bool
	at         time.Time
}

func newMemPub(seed map[string]string) *memPub {
	p := &memPub{id: "node-1", addr: "127.0.0.1:7946", keys: map[string]string{}}
	maps.Copy(p.keys, seed)
	return p
}

func (p *memPub) ID() string   { return p.id }
func (p *memPub) Addr() string { return p.addr }

func (p *memPub) UpdateLocal(k, v string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.keys[k]; ok && old == v {
		return nil
	}
	p.keys[k] = v
	p.writes++
	p.history = append(p.history, change{key: k, value: v, set: true, at: time.Now()})
	return nil
}

func (p *memPub) DeleteLocal(k string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.keys[k]; ok {
		delete(p.keys, k)
		p.writes++
		p.history = append(p.history, change{key: k, at: time.Now()})
	}
	return nil
}

func (p *memPub) State(id string) (map[string]string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id != p.id {
		return nil, false
	}
	return maps.Clone(p.keys), true
}

// changesOf returns the changes of one key, in order.
func (p *memPub) changesOf(key string) []change {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []change
	for _, c := range p.history {
		if c.key == key {
			out = append(out, c)
		}
	}
	return out
}

func (p *memPub) Writes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writes
}

// of returns the records published for one container, by key.
func (p *memPub) of(cid string) map[string]Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]Record{}
	for k, v := range p.keys {
		if c, ok := keyContainer(k); ok && c == shortID(cid) {
			r, err := DecodeRecord(v)
			if err != nil {
				panic(err)
			}
			out[k] = r
		}
	}
	return out
}

// record returns the one record of a container's 8080/tcp port.
func (p *memPub) record(cid string) (Record, bool) {
	for k, r := range p.of(cid) {
		if strings.HasSuffix(k, "/8080/tcp") {
			return r, true
		}
	}
	return Record{}, false
}

func (p *memPub) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

// testOptions: only this run's containers, events processed after 50 ms,
// no periodic reconcile unless a test asks for one.
func testOptions(t testing.TB) Options {
	return Options{
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
		HostAddr:     "127.0.0.1",
		RequireLabel: runLabel + "=" + runID,
		Coalesce:     50 * time.Millisecond,
		Resync:       time.Hour,
	}
}

type running struct {
	a    *Adapter
	stop func() error
}

// runAdapter runs an adapter until stop is called or the test ends.
func runAdapter(t testing.TB, pub Publisher, cli *client.Client, opts Options) running {
	t.Helper()
	a, err := New(pub, cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = fmt.Errorf("Run did not return 30 s after its context ended")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	// the first reconcile follows the first subscription
	eventually(t, 10*time.Second, "the first reconcile", func() bool { return a.reconciles.Load() > 0 })
	return running{a: a, stop: stop}
}

func inspect(t testing.TB, id string) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := engine(t).ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	return res.Container
}

func TestPublishedPortAppears(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	runAdapter(t, pub, cli, testOptions(t))

	id := startContainer(t, spec{publish: true, labels: map[string]string{
		"scuttlebutt.service": "web",
		"scuttlebutt.tags":    "a, b",
		"scuttlebutt.export":  "team,absent",
		"team":                "blue",
	}})
	key := serviceKey("web", id, 8080, "tcp")
	var r Record
	eventually(t, 10*time.Second, "key "+key, func() bool {
		var ok bool
		r, ok = pub.of(id)[key]
		return ok
	})
	c := inspect(t, id)
	want := hostPort(t, id)
	if r.Port != want || r.Host != "127.0.0.1" || r.Private != 8080 || r.Proto != "tcp" {
		t.Errorf("record address %s (private %d/%s), want 127.0.0.1:%d (8080/tcp)", r.Addr(), r.Private, r.Proto, want)
	}
	if r.Service != "web" || r.Container != id[:12] || r.Name != strings.TrimPrefix(c.Name, "/") || r.Image != imageRef {
		t.Errorf("record identity %+v", r)
	}
	if strings.Join(r.Tags, ",") != "a,b" || len(r.Labels) != 1 || r.Labels["team"] != "blue" {
		t.Errorf("tags %q labels %v", r.Tags, r.Labels)
	}
	if r.State != StateRunning || r.Started == 0 {
		t.Errorf("state %q started %d", r.State, r.Started)
	}
	// the record's address reaches the service
	var err error
	if !poll(10*time.Second, func() bool {
		var resp *http.Response
		if resp, err = http.Get("http://" + r.Addr() + "/"); err == nil {
			resp.Body.Close()
		}
		return err == nil
	}) {
		t.Fatalf("GET the published address: %v", err)
	}
}

func TestHealthTransitions(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	run := runAdapter(t, pub, cli, testOptions(t))

	// Starts sick inside a long start period: "starting" until a check
	// passes; then every failure counts.
	id := startContainer(t, spec{publish: true, args: []string{"-sick"}, health: &container.HealthConfig{
		Test: []string{"CMD", "/app", "health"}, Interval: 200 * time.Millisecond,
		Timeout: 2 * time.Second, StartPeriod: time.Hour, Retries: 1,
	}})
	health := func() string {
		r, _ := pub.record(id)
		return r.Health
	}
	eventually(t, 10*time.Second, "health starting", func() bool { return health() == HealthStarting })
	post(t, id, "/well")
	eventually(t, 10*time.Second, "health healthy", func() bool { return health() == HealthHealthy })

	// No churn: reconciles that find nothing new write nothing.
	writes := pub.Writes()
	for range 3 {
		run.a.markDirty(id)
		awaitReconcileNow(t, run.a)
	}
	if got := pub.Writes(); got != writes {
		t.Errorf("%d writes by reconciles of an unchanged container", got-writes)
	}

	post(t, id, "/sick")
	eventually(t, 10*time.Second, "health unhealthy", func() bool { return health() == HealthUnhealthy })
	if r, _ := pub.record(id); r.Healthy() {
		t.Errorf("unhealthy record reports Healthy")
	}
}

// awaitReconcileNow asks the worker for a full reconcile and waits for it.
func awaitReconcileNow(t testing.TB, a *Adapter) {
	t.Helper()
	n := a.reconciles.Load()
	a.signals <- sigLost // a reconcile, as after a broken stream
	eventually(t, 10*time.Second, "a full reconcile", func() bool { return a.reconciles.Load() > n })
}

func TestStopKillRemoveConverge(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	runAdapter(t, pub, cli, testOptions(t))
	ctx := context.Background()

	ops := map[string]func(id string) error{
		"stop": func(id string) error {
			_, err := cli.ContainerStop(ctx, id, client.ContainerStopOptions{})
			return err
		},
		"kill": func(id string) error {
			_, err := cli.ContainerKill(ctx, id, client.ContainerKillOptions{})
			return err
		},
		"remove": func(id string) error {
			_, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
			return err
		},
	}
	opNames := []string{"stop", "kill", "remove"}
	specs := make([]spec, len(opNames))
	for i, name := range opNames {
		specs[i] = spec{publish: true, labels: map[string]string{"scuttlebutt.service": "op-" + name}}
	}
	ids := map[string]string{}
	for i, id := range startContainers(t, specs...) {
		ids[opNames[i]] = id
	}
	for name, id := range ids {
		eventually(t, 10*time.Second, name+" container published", func() bool { return len(pub.of(id)) == 1 })
	}
	ready(t, ids["stop"])
	for name, op := range ops {
		if err := op(ids[name]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name, id := range ids {
		eventually(t, 20*time.Second, name+" container withdrawn", func() bool { return len(pub.of(id)) == 0 })
	}
}

func TestRestartsConverge(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	runAdapter(t, pub, cli, testOptions(t))

	// converged: published iff running, with the running instance's start time
	converged := func(id string) func() bool {
		return func() bool {
			c := inspect(t, id)
			r, ok := pub.record(id)
			if !c.State.Running || c.State.Restarting {
				return !ok
			}
			st, err := time.Parse(time.RFC3339Nano, c.State.StartedAt)
			return ok && err == nil && r.Started == st.Unix() && r.Port == hostPort(t, id)
		}
	}

	t.Run("policy", func(t *testing.T) {
		id := startContainer(t, spec{publish: true, restart: container.RestartPolicyAlways, labels: map[string]string{"scuttlebutt.service": "always"}})
		eventually(t, 10*time.Second, "published", func() bool { _, ok := pub.record(id); return ok })
		post(t, id, "/exit") // exits 3; the engine restarts it
		eventually(t, 20*time.Second, "restarted by the engine", func() bool { return inspect(t, id).RestartCount >= 1 })
		eventually(t, 20*time.Second, "record of the restarted container", converged(id))
	})
	t.Run("docker restart", func(t *testing.T) {
		id := startContainer(t, spec{publish: true, labels: map[string]string{"scuttlebutt.service": "restarted"}})
		eventually(t, 10*time.Second, "published", func() bool { _, ok := pub.record(id); return ok })
		ready(t, id)
		before := inspect(t, id).State.StartedAt
		if _, err := cli.ContainerRestart(context.Background(), id, client.ContainerRestartOptions{}); err != nil {
			t.Fatal(err)
		}
		if inspect(t, id).State.StartedAt == before {
			t.Fatal("restart did not restart")
		}
		eventually(t, 20*time.Second, "record of the restarted container", converged(id))
	})
}

func TestPolicy(t *testing.T) {
	cli := engine(t)
	// the same containers for both adapters: the engine is slow to start them
	ids := startContainers(t,
		spec{publish: true},
		spec{publish: true, labels: map[string]string{"scuttlebutt.port.8080.name": "api"}},
		spec{publish: true, labels: map[string]string{"scuttlebutt.service": "x", "scuttlebutt.ignore": "true"}},
		spec{labels: map[string]string{"scuttlebutt.service": "y"}},
		spec{publish: true, labels: map[string]string{"scuttlebutt.service": "z", "scuttlebutt.port.8080.ignore": "true"}},
	)
	plain, named, ignored, unpublished, portIgnored := ids[0], ids[1], ids[2], ids[3], ids[4]
	for _, explicit := range []bool{false, true} {
		t.Run(fmt.Sprintf("explicit=%v", explicit), func(t *testing.T) {
			pub := newMemPub(nil)
			opts := testOptions(t)
			opts.Explicit = explicit
			run := runAdapter(t, pub, cli, opts)

			eventually(t, 10*time.Second, "named container published", func() bool {
				_, ok := pub.of(named)[serviceKey("api", named, 8080, "tcp")]
				return ok
			})
			if explicit {
				awaitReconcileNow(t, run.a)
			} else {
				eventually(t, 10*time.Second, "plain container published under its image name", func() bool {
					_, ok := pub.of(plain)[serviceKey(imageRepo, plain, 8080, "tcp")]
					return ok
				})
			}
			for name, id := range map[string]string{"ignored": ignored, "unpublished": unpublished, "port ignored": portIgnored} {
				if got := pub.of(id); len(got) != 0 {
					t.Errorf("%s container published: %v", name, got)
				}
			}
			if explicit && len(pub.of(plain)) != 0 {
				t.Errorf("explicit: unlabelled container published")
			}
		})
	}
}

// TestRestartRepairs: an adapter that comes back after missing events finds
// the keys its earlier run left (as State(ID()) returns them), keeps those
// still true, fixes the changed ones, deletes the stale ones and adds the
// new containers.
func TestRestartRepairs(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	first := runAdapter(t, pub, cli, testOptions(t))

	ids := startContainers(t,
		spec{publish: true, labels: map[string]string{"scuttlebutt.service": "stays"}},
		spec{publish: true, labels: map[string]string{"scuttlebutt.service": "stops"}},
		spec{publish: true, labels: map[string]string{"scuttlebutt.service": "sickens"}},
	)
	stays, stops, sickens := ids[0], ids[1], ids[2]
	for _, id := range []string{stays, stops, sickens} {
		eventually(t, 10*time.Second, "published", func() bool {
			r, ok := pub.record(id)
			return ok && r.Health == HealthHealthy
		})
	}
	left, _ := pub.State(pub.ID()) // what a crash would leave
	left[serviceKey("gone", "0123456789abcdef", 80, "tcp")] = `{"v":1,"svc":"gone"}`
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	if n := pub.Len(); n != 0 {
		t.Fatalf("%d keys left after a clean stop", n)
	}

	// missed while no adapter runs
	if _, err := cli.ContainerStop(context.Background(), stops, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	post(t, sickens, "/sick")
	eventually(t, 10*time.Second, "container unhealthy", func() bool {
		h := inspect(t, sickens).State.Health
		return h != nil && h.Status == "unhealthy"
	})
	starts := startContainer(t, spec{publish: true, labels: map[string]string{"scuttlebutt.service": "starts"}})

	pub2 := newMemPub(left)
	run := runAdapter(t, pub2, cli, testOptions(t)) // returns after the first reconcile
	_ = run
	if _, ok := pub2.record(stays); !ok {
		t.Error("running container lost")
	}
	if len(pub2.of(stops)) != 0 {
		t.Error("stopped container still published")
	}
	if len(pub2.of("0123456789abcdef")) != 0 {
		t.Error("stale key of a vanished container kept")
	}
	if r, _ := pub2.record(sickens); r.Health != HealthUnhealthy {
		t.Errorf("sickened container: health %q", r.Health)
	}
	if _, ok := pub2.record(starts); !ok {
		t.Error("container started meanwhile not published")
	}
	if pub2.Len() != 3 {
		t.Errorf("keys %v", pub2.keys)
	}
}

func TestCleanStopWithdraws(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	run := runAdapter(t, pub, cli, testOptions(t))
	id := startContainer(t, spec{publish: true})
	eventually(t, 10*time.Second, "published", func() bool { return len(pub.of(id)) == 1 })
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if pub.Len() != 0 {
		t.Errorf("keys left: %v", pub.keys)
	}
}

func TestDaemonUnreachable(t *testing.T) {
	engine(t)
	t.Run("back within grace", func(t *testing.T) {
		px := newProxy(t)
		pub := newMemPub(nil)
		opts := testOptions(t)
		opts.Grace = time.Hour
		runAdapter(t, pub, px.Client(t), opts)

		ids := startContainers(t,
			spec{publish: true, labels: map[string]string{"scuttlebutt.service": "stays"}},
			spec{publish: true, labels: map[string]string{"scuttlebutt.service": "stops"}},
		)
		stays, stops := ids[0], ids[1]
		for _, id := range []string{stays, stops} {
			eventually(t, 10*time.Second, "published", func() bool { _, ok := pub.record(id); return ok })
		}

		px.Cut()
		eventually(t, 10*time.Second, "records marked unknown", func() bool {
			a, _ := pub.record(stays)
			b, _ := pub.record(stops)
			return a.State == StateUnknown && b.State == StateUnknown
		})
		// while the adapter cannot see it
		ready(t, stops)
		if _, err := engine(t).ContainerStop(context.Background(), stops, client.ContainerStopOptions{}); err != nil {
			t.Fatal(err)
		}
		starts := startContainer(t, spec{publish: true, labels: map[string]string{"scuttlebutt.service": "starts"}})
		if pub.Len() != 2 {
			t.Fatalf("records dropped within the grace period: %v", pub.keys)
		}

		if err := px.Restore(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "reconciled after the daemon came back", func() bool {
			a, okA := pub.record(stays)
			_, okC := pub.record(starts)
			return okA && a.State == StateRunning && len(pub.of(stops)) == 0 && okC
		})
	})

	t.Run("withdrawn after grace", func(t *testing.T) {
		px := newProxy(t)
		pub := newMemPub(nil)
		opts := testOptions(t)
		opts.Grace = 500 * time.Millisecond
		runAdapter(t, pub, px.Client(t), opts)
		id := startContainer(t, spec{publish: true})
		eventually(t, 10*time.Second, "published", func() bool { _, ok := pub.record(id); return ok })
		key := serviceKey(imageRepo, id, 8080, "tcp")
		before := len(pub.changesOf(key))

		px.Cut()
		eventually(t, 10*time.Second, "withdrawn after the grace period", func() bool { return pub.Len() == 0 })
		// marked unknown first, not dropped at once: deleted a grace period later
		cs := pub.changesOf(key)[before:]
		if len(cs) != 2 || !cs[0].set || cs[1].set {
			t.Fatalf("changes of %s while the daemon was away: %+v, want an update then a delete", key, cs)
		}
		if r, err := DecodeRecord(cs[0].value); err != nil || r.State != StateUnknown {
			t.Errorf("record while the daemon was away: %+v, %v; want state unknown", r, err)
		}
		if d := cs[1].at.Sub(cs[0].at); d < opts.Grace-50*time.Millisecond {
			t.Errorf("withdrawn %v after being marked unknown; the grace period is %v", d, opts.Grace)
		}
		if err := px.Restore(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "republished after the daemon came back", func() bool {
			r, ok := pub.record(id)
			return ok && r.State == StateRunning
		})
	})
}

// Lookup returns one key of the publisher.
func (p *memPub) Lookup(k string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.keys[k]
	return v, ok
}
