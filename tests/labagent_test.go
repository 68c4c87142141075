package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agentBuild is the daemon built once per test run: statically
// (CGO_ENABLED=0, so it also fits a FROM scratch image) and never with
// -race, so agents stay fast when the tests run with it.
var agentBuild struct {
	once sync.Once
	dir  string
	err  error
}

// agentBinary returns the path of the built scuttlebutt binary.
func agentBinary(t testing.TB) string {
	t.Helper()
	agentBuild.once.Do(func() {
		agentBuild.dir, agentBuild.err = os.MkdirTemp("", "scuttlebutt-tests-")
		if agentBuild.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(agentBuild.dir, "scuttlebutt"),
			"github.com/scuttlebutt-go/scuttlebutt/scuttlebutt")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if agentBuild.err != nil {
		t.Fatal(agentBuild.err)
	}
	return filepath.Join(agentBuild.dir, "scuttlebutt")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if agentBuild.dir != "" {
		os.RemoveAll(agentBuild.dir)
	}
	os.Exit(code)
}

// logBuffer is a bytes.Buffer safe for one writer and many readers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// statusEvent is a change of a node's status as an agent logged it.
type statusEvent struct {
	at           time.Time
	viewer, node string
	msg          string // "node died", "node is back", "node left", ...
}

// events collects the status changes every agent of a lab logs.
type events struct {
	mu  sync.Mutex
	all []statusEvent
}

func (e *events) add(ev statusEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// since returns the events with msg at or after t0.
func (e *events) since(t0 time.Time, msg string) []statusEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []statusEvent
	for _, ev := range e.all {
		if !ev.at.Before(t0) && ev.msg == msg {
			out = append(out, ev)
		}
	}
	return out
}

// agent is one host's scuttlebutt agent: gossip on the host's address,
// port 8119; HTTP API on 127.0.0.1:7777 inside the host's namespace
// (so writes need no token), reached through a namespace dialer.
type agent struct {
	t      testing.TB
	lab    *lab
	i      int
	id     string
	args   []string
	events *events
	logs   *logBuffer // every incarnation's
	client *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startAgent starts host i's agent with args after the lab's own flags.
func (l *lab) startAgent(i int, ev *events, args ...string) *agent {
	l.t.Helper()
	a := &agent{
		t: l.t, lab: l, i: i, id: fmt.Sprintf("h%d", i), args: args, events: ev, logs: &logBuffer{},
		client: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DialContext: dialer(l.ns(i)), MaxIdleConnsPerHost: 2},
		},
	}
	l.t.Cleanup(func() {
		a.kill()
		a.client.CloseIdleConnections()
		if l.t.Failed() {
			l.t.Logf("logs of %s:\n%s", a.id, a.logs.String())
		}
	})
	a.start()
	return a
}

// start starts the agent (again), with the same ID and an empty state,
// and waits until its HTTP API answers.
func (a *agent) start() {
	a.t.Helper()
	bin := agentBinary(a.t)
	args := append([]string{"netns", "exec", a.lab.ns(a.i), bin, "agent",
		"-id", a.id, "-bind", hostAddr(a.i) + ":8119", "-http", "127.0.0.1:7777",
		"-cluster", "faults", "-log-format", "json"}, a.args...)
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		a.t.Fatal(err)
	}
	fmt.Fprintf(a.logs, "--- start %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	done := make(chan struct{})
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			a.logs.Write(append(line, '\n'))
			var m struct{ Msg, Node string }
			if json.Unmarshal(line, &m) == nil && m.Node != "" && strings.HasPrefix(m.Msg, "node ") {
				a.events.add(statusEvent{at: time.Now(), viewer: a.id, node: m.Node, msg: m.Msg})
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		fmt.Fprintf(a.logs, "--- exit: %v\n", cmd.ProcessState)
		close(done)
	}()
	waitFor(a.t, 20*time.Second, a.id+"'s HTTP API", func() bool {
		select {
		case <-done:
			a.t.Fatalf("agent %s exited:\n%s", a.id, a.logs.String())
		default:
		}
		code, _, _ := a.request("GET", "/healthz", "")
		return code == 200
	})
}

// signal sends sig to the running agent.
func (a *agent) signal(sig syscall.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil && a.cmd.Process != nil {
		a.cmd.Process.Signal(sig)
	}
}

// kill kills the agent with SIGKILL (kill -9) and waits for it to exit.
func (a *agent) kill() {
	a.signal(syscall.SIGCONT) // a paused process dies too, but let it be reaped at once
	a.signal(syscall.SIGKILL)
	a.wait(10 * time.Second)
}

// stop stops the agent with SIGTERM (it leaves the cluster) and waits.
func (a *agent) stop() {
	a.signal(syscall.SIGTERM)
	a.wait(15 * time.Second)
}

func (a *agent) wait(d time.Duration) {
	a.t.Helper()
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(d):
		a.t.Fatalf("agent %s still running %v after a signal", a.id, d)
	}
}

// request makes one HTTP request to the agent's API.
func (a *agent) request(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://127.0.0.1:7777"+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// put writes one of the agent's own keys, recording it in h.
func (a *agent) put(h *history, key, value string) {
	i := h.invoke(opPut, a.id, key, value)
	code, body, err := a.request("PUT", "/v1/kv/"+key, value)
	switch {
	case err != nil:
		h.complete(i, unknown, err.Error())
	case code/100 == 2:
		h.complete(i, acked, "")
	default:
		h.complete(i, failed, fmt.Sprintf("%d %s", code, bytes.TrimSpace(body)))
	}
}

// del deletes one of the agent's own keys, recording it in h.
func (a *agent) del(h *history, key string) {
	i := h.invoke(opDelete, a.id, key, "")
	code, body, err := a.request("DELETE", "/v1/kv/"+key, "")
	switch {
	case err != nil:
		h.complete(i, unknown, err.Error())
	case code/100 == 2 || code == http.StatusNotFound:
		h.complete(i, acked, "")
	default:
		h.complete(i, failed, fmt.Sprintf("%d %s", code, bytes.TrimSpace(body)))
	}
}

// statuses returns how the agent sees every node it knows, nil if it does
// not answer.
func (a *agent) statuses() map[string]string {
	code, body, err := a.request("GET", "/v1/nodes", "")
	if err != nil || code != 200 {
		return nil
	}
	var out struct {
		Nodes []struct{ ID, Status string }
	}
	if json.Unmarshal(body, &out) != nil {
		return nil
	}
	m := map[string]string{}
	for _, n := range out.Nodes {
		m[n.ID] = n.Status
	}
	return m
}

// heartbeats returns the heartbeat of every node the agent knows.
func (a *agent) heartbeats() map[string]uint64 {
	code, body, err := a.request("GET", "/v1/nodes", "")
	if err != nil || code != 200 {
		return nil
	}
	var out struct {
		Nodes []struct {
			ID        string
			Heartbeat uint64
		}
	}
	if json.Unmarshal(body, &out) != nil {
		return nil
	}
	m := map[string]uint64{}
	for _, n := range out.Nodes {
		m[n.ID] = n.Heartbeat
	}
	return m
}

// view returns the agent's view of the nodes in ids: statuses and keys.
func (a *agent) view(ids []string) (view, error) {
	v := view{status: a.statuses(), keys: map[string]map[string]string{}}
	if v.status == nil {
		return v, fmt.Errorf("%s: no answer to /v1/nodes", a.id)
	}
	for _, id := range ids {
		code, body, err := a.request("GET", "/v1/nodes/"+url.PathEscape(id), "")
		if err != nil {
			return v, err
		}
		if code == http.StatusNotFound {
			continue
		}
		var n struct{ State map[string]string }
		if code != 200 || json.Unmarshal(body, &n) != nil {
			return v, fmt.Errorf("%s: GET /v1/nodes/%s: %d %s", a.id, id, code, body)
		}
		v.keys[id] = n.State
	}
	return v, nil
}
