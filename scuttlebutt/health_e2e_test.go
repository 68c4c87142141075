package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testServiceEnv makes the test binary a service for the end-to-end
// scripts (see TestMain): it listens on the address in it, writes its port
// to $PORT_FILE, answers 503 for testServiceBoot and 200 after, and exits
// on SIGTERM.
const (
	testServiceEnv  = "SCUTTLEBUTT_TEST_SERVICE"
	testServiceBoot = 500 * time.Millisecond
)

func runTestService(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if f := os.Getenv("PORT_FILE"); f != "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		if os.WriteFile(f+".tmp", []byte(port), 0o644) != nil || os.Rename(f+".tmp", f) != nil {
			return 1
		}
	}
	up := time.Now().Add(testServiceBoot)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(up) {
			http.Error(w, "booting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	<-sigs
	return 0
}

// flakyService answers its health checks as told: 200, 500, hang, or hang
// once (past any check's timeout) then 200.
type flakyService struct {
	mode atomic.Int32 // one of the modes below
}

const (
	serveOK = iota
	serve500
	serveHang
	serveSlowOnce
)

func (f *flakyService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch f.mode.Load() {
	case serve500:
		http.Error(w, "broken", http.StatusInternalServerError)
		return
	case serveSlowOnce:
		f.mode.Store(serveOK)
		fallthrough
	case serveHang:
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
		return
	}
	fmt.Fprintln(w, "ok")
}

// bgProc is a background command of a test (watch, a script).
type bgProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startBg(t *testing.T, env []string, name string, args ...string) *bgProc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &bgProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", filepath.Base(name), strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *bgProc) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(15 * time.Second):
		t.Fatalf("%v still running 15 s after SIGTERM", p.cmd.Args)
		return -1
	}
}

// instances returns the instances of a service an agent knows.
func (p *proc) instances(service string) []instanceView {
	var out struct {
		Instances []instanceView `json:"instances"`
	}
	code, body, err := p.request("GET", "/v1/services/"+service, "")
	if err != nil || code != 200 || json.Unmarshal([]byte(body), &out) != nil {
		return nil
	}
	return out.Instances
}

// verdictOf returns the verdict and check output of the one instance of a
// service an agent knows, or "" when it knows none.
func (p *proc) verdictOf(service string) (string, string) {
	list := p.instances(service)
	if len(list) != 1 {
		return "", ""
	}
	out := ""
	if list[0].Check != nil {
		out = list[0].Check.Output
	}
	return list[0].Verdict, out
}

// awaitEverywhere polls the agents until each shows a verdict of service
// whose output contains output, and returns how long the last one took.
func awaitEverywhere(t *testing.T, agents []*proc, service, verdict, output string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	seen := make([]time.Duration, len(agents))
	for {
		all := true
		for i, a := range agents {
			if seen[i] != 0 {
				continue
			}
			if v, out := a.verdictOf(service); v == verdict && strings.Contains(out, output) {
				seen[i] = time.Since(start)
			} else {
				all = false
			}
		}
		if all {
			return slices.Max(seen)
		}
		if time.Since(start) > limit {
			t.Fatalf("after %v, not every node shows %s %s (%q): %v", limit, service, verdict, output, seen)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// A watched service on a real HTTP server that answers 200, then 500, then
// hangs: every node shows passing, failing, then failing by timeouts, each
// within interval × fall + the spread time; `hosts --label` follows; one
// slow answer under the threshold flips nothing anywhere. The watcher's
// SIGTERM withdraws the service; a watcher killed with -9 leaves a record
// that expires everywhere within its TTL.
func TestWatchVerdictsOnEveryNode(t *testing.T) {
	bin := binary(t)
	a1 := startAgentProc(t, bin, "hc-1")
	a2 := startAgentProc(t, bin, "hc-2", "-join", a1.addr)
	a3 := startAgentProc(t, bin, "hc-3", "-join", a1.addr)
	agents := []*proc{a1, a2, a3}
	for _, p := range agents {
		eventually(t, 15*time.Second, p.id+" sees three live nodes", func() bool {
			ns := p.nodes()
			return ns["hc-1"].Status == "alive" && ns["hc-2"].Status == "alive" && ns["hc-3"].Status == "alive"
		})
	}
	svc := &flakyService{}
	srv := httptest.NewServer(svc)
	defer srv.Close()

	const (
		interval = 200 * time.Millisecond
		timeout  = 150 * time.Millisecond
		fall     = 3
		spread   = 2 * time.Second // 20 gossip rounds of -config local, the bound the agent's leases assume
	)
	bound := interval*(fall+1) + timeout + spread // the check under way at the change, fall failures, a report, the gossip
	watchArgs := []string{"watch", "-label", "es", "-service-id", "es-1", "-monitor-url", srv.URL + "/health",
		"-interval", interval.String(), "-timeout", timeout.String(), "-fall", strconv.Itoa(fall), "-ttl", "3s",
		"-service-info", `{"http_port": 9200}`, "-log-level", "debug"}
	w := startBg(t, []string{"SCUTTLEBUTT_ADDR=" + a1.base}, bin, watchArgs...)

	d := awaitEverywhere(t, agents, "es", "passing", "200 OK", 15*time.Second)
	t.Logf("registered and passing on every node after %v", d)
	hosts := func(p *proc) (int, string, string) { return runCLIProc(bin, p.base, "hosts", "--label", "es") }
	for _, p := range agents {
		if code, out, _ := hosts(p); code != 0 || strings.TrimSpace(out) != "127.0.0.1" {
			t.Fatalf("hosts on %s: %d %q", p.id, code, out)
		}
	}
	if in := a3.instances("es"); len(in) != 1 || !strings.Contains(string(in[0].Info), "9200") || in[0].Node != "hc-1" {
		t.Fatalf("instance seen on hc-3: %+v", in)
	}

	// One slow answer, under the threshold: nothing flips, anywhere.
	svc.mode.Store(serveSlowOnce)
	end := time.Now().Add(interval * (fall + 3))
	for time.Now().Before(end) {
		for _, p := range agents {
			if v, out := p.verdictOf("es"); v != "passing" {
				t.Fatalf("%s shows %s (%s) after one slow answer", p.id, v, out)
			}
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	if svc.mode.Load() != serveOK {
		t.Fatal("the slow answer was never asked for")
	}
	if n := strings.Count(w.out.String(), "verdict changed"); n != 1 {
		t.Fatalf("the watcher's verdict changed %d times, want once (to passing)", n)
	}

	svc.mode.Store(serve500)
	d = awaitEverywhere(t, agents, "es", "failing", "HTTP 500", bound)
	t.Logf("200 → 500: failing on every node after %v (bound %v)", d, bound)
	for _, p := range agents {
		if code, out, _ := hosts(p); code != exitNotFound || out != "" {
			t.Fatalf("hosts on %s with the instance failing: %d %q", p.id, code, out)
		}
	}
	svc.mode.Store(serveHang)
	d = awaitEverywhere(t, agents, "es", "failing", "timed out after 150ms", bound)
	t.Logf("500 → hang: failing (timeout) on every node after %v (bound %v)", d, bound)
	svc.mode.Store(serveOK)
	d = awaitEverywhere(t, agents, "es", "passing", "", bound)
	t.Logf("hang → 200: passing on every node after %v (bound %v)", d, bound)
	for _, p := range agents {
		if code, _, _ := hosts(p); code != 0 {
			t.Fatalf("hosts on %s after recovery: %d", p.id, code)
		}
	}

	// The agent counted the reported checks.
	metrics := a1.mustRequest("GET", "/metrics", "", 200)
	for _, want := range []string{`scuttlebutt_health_checks_total{result="timeout",source="watch"}`, `scuttlebutt_health_check_duration_seconds_count{source="watch"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGTERM withdraws the service everywhere.
	if code := w.stop(t); code != 0 {
		t.Fatalf("watch exited %d after SIGTERM", code)
	}
	eventually(t, 10*time.Second, "the service withdrawn everywhere", func() bool {
		return len(a1.instances("es"))+len(a2.instances("es"))+len(a3.instances("es")) == 0
	})

	// A watcher killed with -9 withdraws nothing: its record stops counting
	// within its TTL (3 s) on every node, then its agent withdraws it.
	w = startBg(t, []string{"SCUTTLEBUTT_ADDR=" + a1.base}, bin, watchArgs...)
	awaitEverywhere(t, agents, "es", "passing", "", 15*time.Second)
	w.cmd.Process.Kill()
	killed := time.Now()
	for _, p := range agents {
		eventually(t, 3*time.Second+spread+time.Second, p.id+" stops listing the killed watcher's service as healthy", func() bool {
			code, _, _ := hosts(p)
			return code == exitNotFound
		})
	}
	t.Logf("watcher killed: no healthy instance on any node after %v (TTL 3s)", time.Since(killed).Round(time.Millisecond))
	eventually(t, 10*time.Second, "the killed watcher's service withdrawn", func() bool { return len(a3.instances("es")) == 0 })
}

// ServiceMonitor's systemd example (shared/seeds/004_*), as a script of
// three service instances on loopback, each on its own address
// (127.0.0.1-3) with its own agent: acquire-lease, start, watch, hosts.
// They race for the lease; they come up one after another, and each sees
// the ones before it in `hosts`.
func TestServiceMonitorSystemdExample(t *testing.T) {
	bin := binary(t)
	script, err := filepath.Abs("testdata/servicemonitor-unit.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var agents []*proc
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		extra := []string{"-bind", ip + ":0", "-http", ip + ":0"}
		if i > 1 {
			extra = append(extra, "-join", agents[0].addr)
		}
		agents = append(agents, startAgentProc(t, bin, fmt.Sprintf("host-%d", i), extra...))
	}
	for _, p := range agents {
		eventually(t, 15*time.Second, p.id+" sees three live nodes", func() bool {
			alive := 0
			for _, n := range p.nodes() {
				if n.Status == "alive" {
					alive++
				}
			}
			return alive == 3
		})
	}

	type unit struct {
		ip, work string
		proc     *bgProc
	}
	var units []*unit
	for i, a := range agents {
		u := &unit{ip: fmt.Sprintf("127.0.0.%d", i+1), work: t.TempDir()}
		u.proc = startBg(t, []string{
			"SB=" + bin, "P=es", "I=" + strconv.Itoa(i+1), "COREOS_PRIVATE_IPV4=" + u.ip, "SCUTTLEBUTT_ADDR=" + a.base,
			"WORK=" + u.work, "SERVICE=" + self, testServiceEnv + "=" + u.ip + ":0",
		}, "bash", script)
		units = append(units, u)
	}
	t.Cleanup(func() {
		for _, u := range units { // ExecStop: the monitor, then the service
			for _, f := range []string{"watch.pid", "service.pid"} {
				if b, err := os.ReadFile(filepath.Join(u.work, f)); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
						syscall.Kill(pid, syscall.SIGTERM)
					}
				}
			}
		}
	})

	// Every instance comes up: passing on every node.
	eventually(t, 60*time.Second, "three passing instances on every node", func() bool {
		for _, a := range agents {
			passing := 0
			for _, in := range a.instances("es") {
				if in.Verdict == "passing" {
					passing++
				}
			}
			if passing != 3 {
				return false
			}
		}
		return true
	})

	// In the order they got the lease, each saw exactly the ones before.
	type started struct {
		ip    string
		at    float64
		hosts []string
	}
	var order []started
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join(u.work, "lease-acquired"))
		if err != nil {
			t.Fatalf("%s never acquired the lease: %v\n%s", u.ip, err, u.proc.out.String())
		}
		at, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		hb, _ := os.ReadFile(filepath.Join(u.work, "unicast-hosts"))
		var hosts []string
		for _, h := range strings.Split(strings.TrimSpace(string(hb)), ",") {
			if h = strings.TrimSuffix(strings.TrimSpace(h), ":9300"); h != "" {
				hosts = append(hosts, h)
			}
		}
		sort.Strings(hosts)
		order = append(order, started{ip: u.ip, at: at, hosts: hosts})
	}
	sort.Slice(order, func(i, j int) bool { return order[i].at < order[j].at })
	var before []string
	for i, s := range order {
		if !slices.Equal(s.hosts, before) {
			t.Errorf("instance %d (%s) saw hosts %v, want %v", i+1, s.ip, s.hosts, before)
		}
		if i > 0 {
			t.Logf("instance %d (%s) got the lease %.2f s after instance %d", i+1, s.ip, s.at-order[i-1].at, i)
			if s.at-order[i-1].at < testServiceBoot.Seconds() {
				t.Errorf("instance %d got the lease %.2f s after the previous one, before it could boot", i+1, s.at-order[i-1].at)
			}
		}
		before = append(slices.Clone(before), s.ip)
		sort.Strings(before)
	}
	if out := order[0].hosts; len(out) != 0 {
		t.Errorf("the first instance saw %v", out)
	}
	for _, u := range units {
		if !strings.Contains(u.proc.out.String(), "[es] ") {
			t.Errorf("%s did not say whom it connects to:\n%s", u.ip, u.proc.out.String())
		}
	}
	if code, out, _ := runCLIProc(bin, agents[2].base, "hosts", "--label=es", "--host-ip=127.0.0.3"); code != 0 ||
		strings.TrimSpace(out) != "127.0.0.1,127.0.0.2,127.0.0.3" {
		t.Errorf("hosts at the end: %d %q", code, out)
	}
	// The leases are all released by the instances' health.
	eventually(t, 10*time.Second, "every lease released", func() bool {
		var leases struct {
			Queues map[string][]queueEntry `json:"queues"`
		}
		json.Unmarshal([]byte(agents[0].mustRequest("GET", "/v1/leases", "", 200)), &leases)
		return len(leases.Queues["es"]) == 0
	})
	for _, a := range agents {
		if !strings.Contains(a.logs.String(), `"why":"the service passed its health check"`) {
			t.Errorf("%s did not release its lease on the service's health:\n%s", a.id, a.logs.String())
		}
	}
}

// acquire-lease blocks while another instance holds the lease and exits 1
// at its timeout, withdrawing its request; release-lease lets the next in.
func TestAcquireLeaseTimeout(t *testing.T) {
	bin := binary(t)
	a := startAgentProc(t, bin, "lease-1", "-lease-skew", "10ms", "-lease-spread", "100ms")
	run := func(args ...string) (int, string, string) { return runCLIProc(bin, a.base, args...) }
	if code, _, errs := run("acquire-lease", "--label", "es", "--service-id", "es-1", "--hold-until-healthy=false"); code != 0 {
		t.Fatalf("first acquire: %d %s", code, errs)
	}
	start := time.Now()
	code, _, errs := run("acquire-lease", "-label", "es", "-service-id", "es-2", "-timeout", "1s")
	if code != exitError || !strings.Contains(errs, "timed out after 1s") || !strings.Contains(errs, "es-1@lease-1") {
		t.Fatalf("second acquire while held: %d %q", code, errs)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("acquire-lease -timeout 1s took %v", d)
	}
	var q struct {
		Queue []queueEntry `json:"queue"`
	}
	json.Unmarshal([]byte(a.mustRequest("GET", "/v1/leases/es", "", 200)), &q)
	if len(q.Queue) != 1 || q.Queue[0].ServiceID != "es-1" {
		t.Fatalf("queue after the timeout: %+v", q.Queue)
	}
	// The next one waits until release-lease.
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "acquire-lease", "-label", "es", "-service-id", "es-3", "-json")
	cmd.Env = append(os.Environ(), "SCUTTLEBUTT_ADDR="+a.base)
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "es-3 queued", func() bool {
		json.Unmarshal([]byte(a.mustRequest("GET", "/v1/leases/es", "", 200)), &q)
		return len(q.Queue) == 2
	})
	if code, _, errs := run("release-lease", "--label", "es", "--service-id", "es-1"); code != 0 {
		t.Fatalf("release: %d %s", code, errs)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("acquire after the release: %v", err)
	}
	var v leaseView
	if json.Unmarshal(out.Bytes(), &v) != nil || v.State != leaseHeld || v.ServiceID != "es-3" {
		t.Fatalf("acquire -json: %s", out.String())
	}
	if code, _, _ := run("release-lease", "--label", "es", "--service-id", "nobody"); code != exitNotFound {
		t.Errorf("release of an unknown request: %d", code)
	}
	for _, args := range [][]string{
		{"acquire-lease", "-label", "es"},
		{"acquire-lease", "-label", "es", "-service-id", "x", "-timeout", "0s"},
		{"watch", "-label", "es", "-service-id", "x"},
		{"watch", "-label", "es", "-service-id", "x", "-monitor-url", "ftp://h/"},
		{"watch", "-label", "es", "-service-id", "x", "-monitor-url", "http://h/", "-tcp", "h:1"},
		{"watch", "-label", "es", "-service-id", "x", "-monitor-url", "http://h/", "-service-info", "{"},
		{"watch", "-label", "e s", "-service-id", "x", "-monitor-url", "http://h/"},
		{"watch", "-label", "es", "-service-id", "x", "-monitor-url", "http://h/", "-interval", "1s", "-timeout", "2s"},
		{"watch", "-label", "es", "-service-id", "x", "-monitor-url", "http://h/", "-port", "99999"},
	} {
		if code, _, errs := run(args...); code != exitUsage || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}
