package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The safety rules: not more than half of the cluster within the window,
// not this node's last live peer, not the last live node, unless forced.
func TestDecommissionSafetyRules(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	if code, body := ts.do(t, "POST", "/v1/nodes/n2/decommission", "", ""); code != http.StatusAccepted {
		t.Fatalf("the first of three: %d %s", code, body)
	}
	code, body := ts.do(t, "POST", "/v1/nodes/n3/decommission", "", "")
	if code != http.StatusConflict || !strings.Contains(body, "more than half") || !strings.Contains(body, "-force") {
		t.Fatalf("the second of three: %d %s, want 409", code, body)
	}
	if ts.srv.decom.isOut("n3") {
		t.Fatal("n3 decommissioned by a refused request")
	}
	if code, body := ts.do(t, "POST", "/v1/nodes/n3/decommission?force=true", "", ""); code != http.StatusAccepted {
		t.Fatalf("forced: %d %s", code, body)
	}

	// Two nodes: the peer is this node's last.
	two := newTestServer(t, serverOptions{loopbackOnly: true})
	two.node.mu.Lock()
	delete(two.node.infos, "n3")
	two.node.mu.Unlock()
	code, body = two.do(t, "POST", "/v1/nodes/n2/decommission", "", "")
	if code != http.StatusConflict || !strings.Contains(body, "last live peer") {
		t.Fatalf("the last live peer: %d %s, want 409", code, body)
	}
	if code, body := two.do(t, "POST", "/v1/nodes/n2/decommission", "application/json", `{"force": true}`); code != http.StatusAccepted {
		t.Fatalf("the last live peer, forced: %d %s", code, body)
	}
	// Alone: this node is the last live node.
	alone := newTestServer(t, serverOptions{loopbackOnly: true})
	alone.node.mu.Lock()
	delete(alone.node.infos, "n2")
	delete(alone.node.infos, "n3")
	alone.node.mu.Unlock()
	if code, body := alone.do(t, "POST", "/v1/nodes/n1/decommission", "", ""); code != http.StatusConflict || !strings.Contains(body, "last live node") {
		t.Fatalf("the last live node: %d %s, want 409", code, body)
	}
}

// A node whose API needs a token can be decommissioned only with that
// token's authority: an agent without it refuses (403); given the token,
// the marker carries its HMAC; the target verifies it, and answers a
// marker without it with a newer one that clears it.
func TestDecommissionNeedsTargetToken(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	ts.node.set("n2", authKey, "token")
	code, body := ts.do(t, "POST", "/v1/nodes/n2/decommission", "", "")
	if code != http.StatusForbidden || !strings.Contains(body, "token") {
		t.Fatalf("without the target's token: %d %s, want 403", code, body)
	}
	if ts.srv.decom.isOut("n2") {
		t.Fatal("decommissioned without the token")
	}
	if code, body := ts.do(t, "POST", "/v1/nodes/n2/decommission", "application/json", `{"token": "T2"}`); code != http.StatusAccepted {
		t.Fatalf("with the target's token: %d %s", code, body)
	}
	v, _ := ts.node.Lookup("n1", "decommission/n2")
	m, _ := decodeMarker(v)
	if !validMAC("T2", "n2", m) || validMAC("other", "n2", m) {
		t.Fatalf("marker %s does not carry the HMAC under T2", v)
	}

	// The target's side.
	target := newFakeNode("t1", "x1")
	d := newDecommissions("t1", slog.New(slog.DiscardHandler))
	d.token = "T1"
	d.setNode(target)
	forged := marker{At: time.Now().UnixNano(), By: "x1"}
	d.heard("x1", "decommission/t1", forged.encode())
	select {
	case <-d.fired():
		t.Fatal("a marker without the HMAC fired")
	default:
	}
	rv, _ := target.Lookup("t1", "decommission/t1")
	if r, ok := decodeMarker(rv); !ok || !r.Cleared || !r.Refused || !r.newer(forged) {
		t.Fatalf("no refusal published: %q", rv)
	}
	if d.isOut("t1") {
		t.Fatal("the target counts itself out")
	}
	if l := d.list(); len(l) != 1 || !l[0].Refused || !l[0].Cleared {
		t.Fatalf("/v1/decommissions of the target: %+v", l)
	}
	good := marker{At: time.Now().UnixNano() + 10, By: "x1"}
	good.MAC = markerMAC("T1", "t1", good)
	d.heard("x1", "decommission/t1", good.encode())
	select {
	case <-d.fired():
	case <-time.After(5 * time.Second):
		t.Fatal("a marker with the HMAC did not fire")
	}
}

// With -data-dir, markers outlive the process: a new agent with the same
// directory holds them and publishes them again.
func TestDecommissionMarkersSaved(t *testing.T) {
	dir := t.TempDir()
	f := dataFlags{dir: filepath.Join(dir, "data")}
	path, err := f.file("decommissions.json")
	if err != nil {
		t.Fatal(err)
	}
	n := newFakeNode("n1", "n2", "n3")
	d := newDecommissions("n1", slog.New(slog.DiscardHandler))
	d.store = &decommissionStore{path: path}
	d.setNode(n)
	if _, err := d.set("n2", false); err != nil {
		t.Fatal(err)
	}
	d.heard("n3", "decommission/n9", marker{At: 5, By: "n3", Cleared: true}.encode())

	n2 := newFakeNode("n1")
	d2 := newDecommissions("n1", slog.New(slog.DiscardHandler))
	d2.store = &decommissionStore{path: path}
	d2.setNode(n2)
	saved, err := d2.store.load()
	if err != nil || len(saved) != 2 {
		t.Fatalf("saved markers %v, %v", saved, err)
	}
	d2.restore(saved)
	if !d2.isOut("n2") || d2.isOut("n9") {
		t.Fatalf("restored: %v", d2.list())
	}
	if v, ok := n2.Lookup("n1", "decommission/n2"); !ok || !strings.Contains(v, `"by":"n1"`) {
		t.Fatalf("restored marker not published again: %q", v)
	}
}

// The attack of issue 21 on real agents: an agent without a token cannot
// decommission a token-protected node; a loop over the members stops at
// the last live peer; and after a restart of the whole cluster (with
// -data-dir) the decommission still stands: the listing has it, and the
// node, started again, exits again.
func TestDecommissionSafetyEndToEnd(t *testing.T) {
	bin := binary(t)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	a1 := startAgentProc(t, bin, "ds-1", "-data-dir", dirs[0])
	a2 := startAgentProc(t, bin, "ds-2", "-data-dir", dirs[1], "-join", a1.addr)
	a3 := startAgentProc(t, bin, "ds-3", "-data-dir", dirs[2], "-join", a1.addr, "-token", "T3")
	eventually(t, 15*time.Second, "three live nodes", func() bool {
		ns := a1.nodes()
		return ns["ds-2"].Status == "alive" && ns["ds-3"].Status == "alive"
	})
	eventually(t, 10*time.Second, "ds-1 hears that ds-3 needs a token", func() bool {
		code, _, _ := a1.request("GET", "/v1/kv/auth?node=ds-3", "")
		return code == 200
	})
	a1.mustRequest("POST", "/v1/nodes/ds-3/decommission", "", http.StatusForbidden)
	a1.mustRequest("POST", "/v1/nodes/ds-3/decommission", `{"token": "T3"}`, http.StatusAccepted, "Content-Type", "application/json")
	if code := a3.wait(15 * time.Second); code != 0 {
		t.Fatalf("ds-3 exited %d, want 0", code)
	}
	// The loop goes on to ds-2, this node's last live peer: refused.
	eventually(t, 10*time.Second, "ds-3 left", func() bool { return a1.statusOf("ds-3") != "alive" })
	a1.mustRequest("POST", "/v1/nodes/ds-2/decommission", "", http.StatusConflict)

	// The whole cluster restarts.
	for _, p := range []*proc{a1, a2} {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(15 * time.Second); code != 0 {
			t.Fatalf("%s exited %d", p.id, code)
		}
	}
	b1 := startAgentProc(t, bin, "ds-1", "-data-dir", dirs[0])
	b2 := startAgentProc(t, bin, "ds-2", "-data-dir", dirs[1], "-join", b1.addr)
	var out struct {
		Decommissions []decommissionView `json:"decommissions"`
	}
	if err := json.Unmarshal([]byte(b1.mustRequest("GET", "/v1/decommissions", "", 200)), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Decommissions) != 1 || out.Decommissions[0].ID != "ds-3" || out.Decommissions[0].Cleared {
		t.Fatalf("decommissions after the restart: %+v, want ds-3", out.Decommissions)
	}
	eventually(t, 15*time.Second, "ds-2 back", func() bool { return b1.statusOf("ds-2") == "alive" })
	b3 := startAgentProc(t, bin, "ds-3", "-data-dir", dirs[2], "-join", b1.addr, "-token", "T3")
	if code := b3.wait(20 * time.Second); code != 0 {
		t.Fatalf("ds-3 started again exited %d, want 0 (decommissioned)", code)
	}
	if !strings.Contains(b3.logs.String(), "decommissioned") {
		t.Fatalf("ds-3 did not say why it exits:\n%s", b3.logs.String())
	}
	_ = b2
}
