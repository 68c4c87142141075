package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRegistryFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // "" = accepted
	}{
		{[]string{"-registry", "file://" + dir, "-servers", "3", "-registry-expiry", "2s"}, nil, ""},
		{nil, map[string]string{"SCUTTLEBUTT_REGISTRY": "file://" + dir, "SCUTTLEBUTT_SERVERS": "1"}, ""},
		{[]string{"-registry", "dns://seeds.example.com"}, nil, ""},
		{[]string{"-exec", "true"}, nil, ""},
		{[]string{"-servers", "3"}, nil, "-servers needs -registry"},
		{[]string{"-registry", "dns://seeds.example.com", "-servers", "1"}, nil, "read-only"},
		{[]string{"-registry", "file://" + dir, "-servers", "-1"}, nil, "-servers -1"},
		{[]string{"-registry", "file://" + dir, "-registry-expiry", "10ms"}, nil, "at least 1s"},
		{[]string{"-registry", "gopher://x"}, nil, `unknown scheme "gopher"`},
		{[]string{"-registry", "s3://"}, nil, "the bucket is missing"},
		{[]string{"-registry", "file://relative"}, nil, "has no host"},
		{[]string{"-exec", "true", "-exec-stop-timeout", "0s"}, nil, "-exec-stop-timeout"},
		{nil, map[string]string{"SCUTTLEBUTT_SERVERS": "10.0.0.1:8119"}, "SCUTTLEBUTT_SERVERS"},
	} {
		var c agentConfig
		fs := newAgentFlagSet(&c)
		_, err := parseFlags(fs, tc.args, func(k string) string { return tc.env[k] })
		if err == nil {
			_, err = c.gossipConfig()
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v %v: %v, want an error saying %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestRoleInAPI: the role keys show in /v1/nodes, /v1/nodes/{id}, on the
// page, and cannot be written through the API when -servers owns them.
func TestRoleInAPI(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true, rolesOwned: true})
	ts.node.set("n1", roleKey, "server")
	ts.node.set("n1", bootstrapKey, "true")
	ts.node.set("n2", roleKey, "agent")
	code, body := ts.do(t, "GET", "/v1/nodes", "", "")
	var out struct{ Nodes []nodeJSON }
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("/v1/nodes: %d %s", code, body)
	}
	roles := map[string]string{}
	for _, n := range out.Nodes {
		roles[n.ID] = n.Role + "/" + strconv.FormatBool(n.Bootstrap)
	}
	if roles["n1"] != "server/true" || roles["n2"] != "agent/false" || roles["n3"] != "/false" {
		t.Fatalf("roles in /v1/nodes: %v", roles)
	}
	if _, body := ts.do(t, "GET", "/v1/nodes/n1", "", ""); !strings.Contains(body, `"role": "server"`) || !strings.Contains(body, `"bootstrap": true`) {
		t.Fatalf("/v1/nodes/n1: %s", body)
	}
	_, page := ts.do(t, "GET", "/", "", "")
	if !strings.Contains(page, `data-role="server">server · bootstrap</span>`) || !strings.Contains(page, `data-role="agent">agent</span>`) {
		t.Fatalf("the page does not show the roles:\n%s", page)
	}
	for _, key := range []string{roleKey, bootstrapKey} {
		if code, body := ts.do(t, "PUT", "/v1/kv/"+key, "text/plain", "x"); code != 409 || !strings.Contains(body, "-servers") {
			t.Errorf("PUT %s: %d %s, want 409", key, code, body)
		}
	}
	// Without -servers they are still the role choice's: every agent
	// shows them as roles, so the KV API may not forge one.
	ts2 := newTestServer(t, serverOptions{loopbackOnly: true})
	if code, body := ts2.do(t, "PUT", "/v1/kv/role", "text/plain", "server"); code != 400 || !strings.Contains(body, "-servers") {
		t.Fatalf("PUT role without -servers: %d %s, want 400", code, body)
	}
}

// gone tells whether process pid has exited (absent, or a zombie nobody
// reaped).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, 10*time.Second, "the command writes its pid", func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

func TestSupervisorRestarts(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	n := 0
	env := func() []string { n++; return []string{"RUN=" + strconv.Itoa(n)} }
	s := startSupervisor(`echo "run $RUN" >> `+runs+`; exit 3`, env, time.Second, log, &bytes.Buffer{})
	eventually(t, 10*time.Second, "the command ran twice", func() bool {
		b, _ := os.ReadFile(runs)
		return strings.Contains(string(b), "run 1\nrun 2\n")
	})
	s.stop()
	if !strings.Contains(logs.String(), `msg="the -exec command exited" status="exit status 3"`) ||
		!strings.Contains(logs.String(), `msg="restarting the -exec command" in=1s`) {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

func TestSupervisorStops(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	env := func() []string { return nil }

	// SIGTERM: the command exits at once.
	pidFile := filepath.Join(dir, "pid1")
	s := startSupervisor("echo $$ > "+pidFile+"; exec sleep 600", env, 5*time.Second, log, &bytes.Buffer{})
	pid := readPid(t, pidFile)
	start := time.Now()
	s.stop()
	if !gone(pid) || time.Since(start) > 3*time.Second {
		t.Fatalf("after stop (%v): the command is still there", time.Since(start))
	}

	// TERM ignored by the shell and its child: killed after the timeout,
	// the whole process group.
	pidFile = filepath.Join(dir, "pid2")
	s = startSupervisor("trap '' TERM; sleep 600 & echo $! > "+pidFile+"; wait", env, 300*time.Millisecond, log, &bytes.Buffer{})
	child := readPid(t, pidFile)
	start = time.Now()
	s.stop()
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("stopped after %v, before the timeout: TERM was not ignored?", d)
	}
	eventually(t, 5*time.Second, "the child in the process group is killed", func() bool { return gone(child) })
}
