package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(testServiceEnv); addr != "" {
		os.Exit(runTestService(addr)) // the test binary as a service of the end-to-end scripts
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds the scuttlebutt command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test with the built binary; skipped with -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "scuttlebutt-e2e-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "scuttlebutt"), ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "scuttlebutt")
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is an agent process.
type proc struct {
	t      *testing.T
	id     string
	cmd    *exec.Cmd
	addr   string // gossip address
	base   string // http://host:port of the API
	logs   *syncBuffer
	done   chan struct{}
	status int
}

// startAgent starts `scuttlebutt agent` on loopback with free ports and
// waits until it says where it listens.
func startAgentProc(t *testing.T, bin, id string, extra ...string) *proc {
	t.Helper()
	return startAgentProcEnv(t, bin, id, nil, extra...)
}

// startAgentProcEnv is startAgentProc with more environment variables.
func startAgentProcEnv(t *testing.T, bin, id string, env []string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"agent", "-id", id, "-bind", "127.0.0.1:0", "-http", "127.0.0.1:0",
		"-config", "local", "-log-format", "json", "-dns", ""}, extra...) // -dns: extra may give one
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "SCUTTLEBUTT_CLUSTER=e2e"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, id: id, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			p.logs.Write(append(line, '\n'))
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "agent started" {
				started <- m
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		p.status = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("logs of %s:\n%s", id, p.logs.String())
		}
	})
	select {
	case m := <-started:
		p.addr, _ = m["addr"].(string)
		h, _ := m["http"].(string)
		p.base = "http://" + h
	case <-p.done:
		t.Fatalf("agent %s exited with %d before starting:\n%s", id, p.status, p.logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("agent %s did not start:\n%s", id, p.logs.String())
	}
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.status
	case <-time.After(d):
		p.t.Fatalf("agent %s still running after %s", p.id, d)
		return -1
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) request(method, path, body string, header ...string) (int, string, error) {
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (p *proc) mustRequest(method, path, body string, want int, header ...string) string {
	p.t.Helper()
	code, b, err := p.request(method, path, body, header...)
	if err != nil {
		p.t.Fatalf("%s %s on %s: %v", method, path, p.id, err)
	}
	if code != want {
		p.t.Fatalf("%s %s on %s: got %d, want %d: %s", method, path, p.id, code, want, b)
	}
	return b
}

// nodes returns the statuses of the nodes this agent knows.
func (p *proc) nodes() map[string]nodeJSON {
	var out struct {
		Nodes []nodeJSON `json:"nodes"`
	}
	code, body, err := p.request("GET", "/v1/nodes", "")
	if err != nil || code != 200 || json.Unmarshal([]byte(body), &out) != nil {
		return nil
	}
	m := map[string]nodeJSON{}
	for _, n := range out.Nodes {
		m[n.ID] = n
	}
	return m
}

func (p *proc) statusOf(id string) string { return p.nodes()[id].Status }

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestEndToEnd(t *testing.T) {
	bin := binary(t)
	a1 := startAgentProc(t, bin, "e2e-1")
	a2 := startAgentProc(t, bin, "e2e-2", "-join", a1.addr)
	a3 := startAgentProc(t, bin, "e2e-3", "-join", a1.addr+","+a2.addr)
	all := []*proc{a1, a2, a3}

	for _, p := range all {
		eventually(t, 15*time.Second, p.id+" sees three live nodes", func() bool {
			ns := p.nodes()
			return len(ns) == 3 && ns["e2e-1"].Status == "alive" && ns["e2e-2"].Status == "alive" && ns["e2e-3"].Status == "alive"
		})
	}

	// Keys written through the API of one node are read on the others.
	a2.mustRequest("PUT", "/v1/kv/color", `{"value":"blue"}`, 200, "Content-Type", "application/json")
	a3.mustRequest("PUT", "/v1/kv/app/size", "large", 200)
	for _, p := range all {
		eventually(t, 10*time.Second, p.id+" reads the keys of e2e-2 and e2e-3", func() bool {
			_, b1, _ := p.request("GET", "/v1/kv/color?node=e2e-2", "")
			_, b2, _ := p.request("GET", "/v1/kv/app/size?node=e2e-3", "")
			return strings.Contains(b1, `"value": "blue"`) && strings.Contains(b2, `"value": "large"`)
		})
	}

	// Bad requests on a real agent: each gets its 4xx, nothing is lost.
	a2.mustRequest("PUT", "/v1/kv/color", `{"value":`, 400, "Content-Type", "application/json")
	a2.mustRequest("PUT", "/v1/kv/color", strings.Repeat("x", 1<<20), 413)
	a2.mustRequest("GET", "/v1/nope", "", 404)
	a2.mustRequest("POST", "/v1/nodes/nobody/decommission", "", 404)
	if b := a2.mustRequest("GET", "/v1/kv/color", "", 200); !strings.Contains(b, `"value": "blue"`) {
		t.Fatalf("state lost after bad requests: %s", b)
	}

	// /metrics parses as Prometheus text.
	metrics := a1.mustRequest("GET", "/metrics", "", 200)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	alive := -1.0
	for _, m := range fams["scuttlebutt_nodes"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "status" && l.GetValue() == "alive" {
				alive = m.GetGauge().GetValue()
			}
		}
	}
	if alive != 3 {
		t.Errorf("scuttlebutt_nodes{status=alive} = %v, want 3", alive)
	}
	if fams["scuttlebutt_gossip_rounds_total"].GetMetric()[0].GetCounter().GetValue() < 1 {
		t.Error("no gossip round counted")
	}
	if m := fams["scuttlebutt_http_connections"].GetMetric(); len(m) != 1 || m[0].GetGauge().GetValue() < 1 {
		t.Errorf("scuttlebutt_http_connections: %v, want this scrape's connection at least", m)
	}
	for name, series := range map[string]int{"scuttlebutt_http_connections_closed_total": 4, "scuttlebutt_suspicions_total": 3,
		"scuttlebutt_catch_ups_received_total": 1, "scuttlebutt_catch_ups_sent_total": 1} {
		if n := len(fams[name].GetMetric()); n != series {
			t.Errorf("%s: %d series, want %d", name, n, series)
		}
	}

	// e2e-3 is decommissioned through e2e-1: it leaves and exits 0.
	a1.mustRequest("POST", "/v1/nodes/e2e-3/decommission", "", 202)
	if code := a3.wait(15 * time.Second); code != 0 {
		t.Fatalf("decommissioned agent exited %d, want 0", code)
	}
	if !strings.Contains(a3.logs.String(), "decommissioned") {
		t.Errorf("decommissioned agent did not say why it exits:\n%s", a3.logs.String())
	}
	for _, p := range []*proc{a1, a2} {
		eventually(t, 10*time.Second, p.id+" sees e2e-3 left and decommissioned", func() bool {
			n := p.nodes()["e2e-3"]
			return n.Status == "left" && n.Decommissioned
		})
	}

	// It stays out: back with the same ID, it hears the marker and exits.
	a3b := startAgentProc(t, bin, "e2e-3", "-join", a2.addr)
	if code := a3b.wait(15 * time.Second); code != 0 {
		t.Fatalf("restarted decommissioned agent exited %d, want 0", code)
	}
	// Cleared by an operator (through another node), it may come back.
	a2.mustRequest("DELETE", "/v1/nodes/e2e-3/decommission", "", 200)
	eventually(t, 10*time.Second, "e2e-1 hears the clear", func() bool {
		n, ok := a1.nodes()["e2e-3"]
		return ok && !n.Decommissioned
	})
	a3c := startAgentProc(t, bin, "e2e-3", "-join", a1.addr)
	eventually(t, 10*time.Second, "e2e-3 back and alive", func() bool { return a1.statusOf("e2e-3") == "alive" })
	if a3c.exited() {
		t.Fatalf("cleared agent exited:\n%s", a3c.logs.String())
	}

	// SIGTERM: e2e-2 leaves; the others see it left, not dead.
	if err := a2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a2.wait(15 * time.Second); code != 0 {
		t.Fatalf("agent exited %d after SIGTERM, want 0", code)
	}
	for _, p := range []*proc{a1, a3c} {
		eventually(t, 10*time.Second, p.id+" sees e2e-2 left", func() bool {
			s := p.statusOf("e2e-2")
			if s == "dead" {
				t.Fatalf("%s sees e2e-2 dead, want left", p.id)
			}
			return s == "left"
		})
	}
	if !strings.Contains(a1.logs.String(), `"msg":"node left","node":"e2e-2"`) {
		t.Errorf("e2e-1 did not log the departure:\n%s", a1.logs.String())
	}
}

// TestCLI runs the CLI commands against an agent with a token.
func TestCLI(t *testing.T) {
	bin := binary(t)
	a := startAgentProc(t, bin, "cli-1", "-token", "tok")
	b := startAgentProc(t, bin, "cli-2", "-join", a.addr)
	eventually(t, 15*time.Second, "two live nodes", func() bool { return a.statusOf("cli-2") == "alive" })
	rec := record("web", "aaaaaaaaaaaa", 31000, "healthy")
	b.mustRequest("PUT", "/v1/kv/svc/web/aaaaaaaaaaaa/80/tcp", rec, 200)
	eventually(t, 10*time.Second, "service seen", func() bool {
		code, _, _ := a.request("GET", "/v1/services/web", "")
		return code == 200
	})

	cli := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SCUTTLEBUTT_ADDR="+a.base)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Run()
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}
	if code, out, errs := cli("members"); code != 0 || !strings.Contains(out, "cli-2") {
		t.Fatalf("members: %d %q %q", code, out, errs)
	}
	if code, out, _ := cli("members", "--json"); code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("members --json: %d %q", code, out)
	}
	if code, out, _ := cli("hosts", "--label", "web"); code != 0 || strings.TrimSpace(out) != "10.0.0.1" {
		t.Fatalf("hosts: %d %q", code, out)
	}
	if code, _, _ := cli("hosts", "--label", "nothing"); code != exitNotFound {
		t.Fatalf("hosts of nothing: %d, want %d", code, exitNotFound)
	}
	if code, out, _ := cli("services", "web", "--json"); code != 0 || !strings.Contains(out, "10.0.0.1:31000") {
		t.Fatalf("services web: %d %q", code, out)
	}
	if code, _, errs := cli("kv", "set", "k", "v"); code != exitError || !strings.Contains(errs, "token") {
		t.Fatalf("kv set without token: %d %q", code, errs)
	}
	if code, _, errs := cli("kv", "set", "k", "v", "-token", "tok"); code != 0 {
		t.Fatalf("kv set: %d %q", code, errs)
	}
	if code, out, _ := cli("kv", "get", "k"); code != 0 || out != "v\n" {
		t.Fatalf("kv get: %d %q", code, out)
	}
	if code, _, _ := cli("kv", "get", "missing"); code != exitNotFound {
		t.Fatalf("kv get missing: %d", code)
	}
	if code, _, _ := cli("kv"); code != exitUsage {
		t.Fatalf("kv alone: %d", code)
	}
	if code, _, _ := cli("members", "-addr", "127.0.0.1:1"); code != exitError {
		t.Fatalf("unreachable agent: %d", code)
	}
	if code, _, _ := cli("decommission", "cli-2", "-token", "tok"); code != exitError {
		t.Fatalf("decommission of the last live peer without -force: %d, want 1", code)
	}
	if code, _, _ := cli("decommission", "cli-2", "-token", "tok", "-force"); code != 0 {
		t.Fatalf("decommission: %d", code)
	}
	if code := b.wait(15 * time.Second); code != 0 {
		t.Fatalf("decommissioned agent exited %d", code)
	}
	if code, out, _ := cli("decommission", "-list"); code != 0 || !strings.Contains(out, "cli-2") {
		t.Fatalf("decommission -list: %d %q", code, out)
	}
}

func TestAgentBadFlags(t *testing.T) {
	bin := binary(t)
	for _, args := range [][]string{
		{"agent", "-bind", "nope"},
		{"agent", "-join", ":8119"},
		{"agent", "-config", "moon"},
		{"agent", "-no-such-flag"},
		{"frobnicate"},
	} {
		cmd := exec.Command(bin, args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != exitUsage || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
