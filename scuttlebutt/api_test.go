package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/lease"
)

// fakeNode is a clusterNode in memory.
type fakeNode struct {
	mu    sync.Mutex
	id    string
	infos map[string]scuttlebutt.NodeInfo
	state map[string]map[string]string
}

// Now is the host's clock.
func (f *fakeNode) Now() time.Time { return time.Now() }

func newFakeNode(id string, peers ...string) *fakeNode {
	f := &fakeNode{id: id, infos: map[string]scuttlebutt.NodeInfo{}, state: map[string]map[string]string{}}
	for i, p := range append([]string{id}, peers...) {
		f.infos[p] = scuttlebutt.NodeInfo{ID: p, Addr: fmt.Sprintf("127.0.0.1:%d", 9000+i), Status: scuttlebutt.StatusAlive,
			Generation: 1, LastHeard: time.Now(), Local: p == id}
		f.state[p] = map[string]string{}
	}
	return f
}

func (f *fakeNode) ID() string   { return f.id }
func (f *fakeNode) Addr() string { return f.infos[f.id].Addr }

func (f *fakeNode) set(node, key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[node][key] = value
	ni := f.infos[node]
	ni.Keys = len(f.state[node])
	f.infos[node] = ni
}

func (f *fakeNode) UpdateLocal(key, value string) error {
	if key == "" {
		return scuttlebutt.ErrEmptyKey
	}
	if strings.HasPrefix(key, scuttlebutt.ReservedPrefix) {
		return scuttlebutt.ErrReservedKey
	}
	f.set(f.id, key, value)
	return nil
}

// peer is the fake node as seen by another of its nodes: writes go to
// that node's keys.
type peer struct {
	*fakeNode
	id string
}

func (p peer) ID() string                    { return p.id }
func (p peer) UpdateLocal(k, v string) error { p.set(p.id, k, v); return nil }
func (p peer) DeleteLocal(key string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.state[p.id], key)
	return nil
}

// ackAsPeers makes the fake peers acknowledge lease requests, as their
// agents would, until the test ends.
func (ts *testServer) ackAsPeers(t *testing.T, opt lease.Options, ids ...string) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, id := range ids {
		go lease.New(peer{ts.node, id}, opt).Run(ctx)
	}
}

func (f *fakeNode) DeleteLocal(key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.state[f.id], key)
	return nil
}

func (f *fakeNode) Lookup(node, key string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.state[node][key]
	return v, ok
}

func (f *fakeNode) State(node string) (map[string]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.state[node]
	return maps.Clone(s), ok
}

func (f *fakeNode) Nodes() []scuttlebutt.NodeInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := slices.Sorted(maps.Keys(f.infos))
	out := make([]scuttlebutt.NodeInfo, len(ids))
	for i, id := range ids {
		out[i] = f.infos[id]
	}
	return out
}

func (f *fakeNode) NodeInfo(id string) (scuttlebutt.NodeInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ni, ok := f.infos[id]
	return ni, ok
}

func (f *fakeNode) Stats() scuttlebutt.Stats {
	return scuttlebutt.Stats{Rounds: 7, PacketsIn: 3, Dropped: map[string]uint64{"cluster": 2}}
}

type testServer struct {
	*httptest.Server
	node *fakeNode
	hub  *hub
	srv  *server
}

func newTestServer(t *testing.T, opt serverOptions) *testServer {
	t.Helper()
	n := newFakeNode("n1", "n2", "n3")
	h := newHub()
	log := slog.New(slog.DiscardHandler)
	d := newDecommissions(n.id, log)
	sub := &subscriber{hub: h, decom: d, log: log}
	pub := &localPublisher{clusterNode: n, hub: h, sub: sub}
	d.setNode(pub)
	s := newServer(pub, h, d, opt)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return &testServer{Server: ts, node: n, hub: h, srv: s}
}

func (ts *testServer) do(t *testing.T, method, path, contentType, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func record(svc, cid string, port int, health string) string {
	b, _ := json.Marshal(docker.Record{V: 1, Service: svc, Container: cid, Name: svc + "-" + cid[:2], Image: "img/" + svc,
		Host: "10.0.0.1", Port: port, Private: 80, Proto: "tcp", Health: health, State: docker.StateRunning})
	return string(b)
}

func TestKVRoundTrip(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	if code, body := ts.do(t, "PUT", "/v1/kv/app/color", "application/json", `{"value":"blue"}`); code != 200 {
		t.Fatalf("PUT json: %d %s", code, body)
	}
	if code, body := ts.do(t, "PUT", "/v1/kv/raw", "text/plain", "hello world"); code != 200 {
		t.Fatalf("PUT raw: %d %s", code, body)
	}
	code, body := ts.do(t, "GET", "/v1/kv/app/color", "", "")
	var e kvEntry
	if code != 200 || json.Unmarshal([]byte(body), &e) != nil || e.Value != "blue" || e.Node != "n1" {
		t.Fatalf("GET: %d %s", code, body)
	}
	if v, _ := ts.node.Lookup("n1", "raw"); v != "hello world" {
		t.Fatalf("raw value %q", v)
	}
	if code, _ := ts.do(t, "DELETE", "/v1/kv/raw", "", ""); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _ := ts.do(t, "DELETE", "/v1/kv/raw", "", ""); code != 404 {
		t.Fatalf("DELETE again: %d, want 404", code)
	}
	if code, _ := ts.do(t, "GET", "/v1/kv/app/color?node=n9", "", ""); code != 404 {
		t.Fatalf("GET unknown node: %d, want 404", code)
	}
}

// TestBadRequests sends every kind of bad request and checks each gets its
// 4xx with a JSON error, and that the node's state is unchanged.
func TestBadRequests(t *testing.T) {
	ts := newTestServer(t, serverOptions{token: "s3cret", maxValue: 100})
	auth := []string{"Authorization", "Bearer s3cret"}
	if code, body := ts.do(t, "PUT", "/v1/kv/keep", "", "me", auth...); code != 200 {
		t.Fatalf("setup PUT: %d %s", code, body)
	}
	before, _ := ts.node.State("n1")

	huge := strings.Repeat("x", 10<<20)
	cases := []struct {
		name, method, path, ctype, body string
		header                          []string
		want                            int
	}{
		{"malformed JSON", "PUT", "/v1/kv/k", "application/json", `{"value":`, auth, 400},
		{"JSON of the wrong shape", "PUT", "/v1/kv/k", "application/json", `{"value":3}`, auth, 400},
		{"JSON without value", "PUT", "/v1/kv/k", "application/json", `{"other":"x"}`, auth, 400},
		{"two JSON values", "PUT", "/v1/kv/k", "application/json", `{"value":"a"} {"value":"b"}`, auth, 400},
		{"huge body", "PUT", "/v1/kv/k", "text/plain", huge, auth, 413},
		{"value over the limit", "PUT", "/v1/kv/k", "text/plain", strings.Repeat("v", 101), auth, 413},
		{"huge decommission body", "POST", "/v1/nodes/n2/decommission", "", huge, auth, 413},
		{"key over the limit", "PUT", "/v1/kv/" + strings.Repeat("k", 200), "", "v", auth, 413},
		{"reserved key", "PUT", "/v1/kv/:left", "", "v", auth, 400},
		{"decommission key", "PUT", "/v1/kv/decommission/n2", "", "v", auth, 400},
		{"bad service record", "PUT", "/v1/kv/svc/web/abc/80/tcp", "", "not a record", auth, 400},
		{"missing token", "PUT", "/v1/kv/k", "", "v", nil, 401},
		{"wrong token", "PUT", "/v1/kv/k", "", "v", []string{"Authorization", "Bearer nope"}, 401},
		{"missing token on delete", "DELETE", "/v1/kv/keep", "", "", nil, 401},
		{"missing token on decommission", "POST", "/v1/nodes/n2/decommission", "", "", nil, 401},
		{"cross-origin write", "PUT", "/v1/kv/k", "", "v", append([]string{"Sec-Fetch-Site", "cross-site"}, auth...), 403},
		{"unknown route", "GET", "/v2/nothing", "", "", nil, 404},
		{"unknown node", "GET", "/v1/nodes/n9", "", "", nil, 404},
		{"decommission unknown node", "POST", "/v1/nodes/n9/decommission", "", "", auth, 404},
		{"clear a node not decommissioned", "DELETE", "/v1/nodes/n2/decommission", "", "", auth, 404},
		{"unknown service", "GET", "/v1/services/nope", "", "", nil, 404},
		{"bad query parameter", "GET", "/v1/services/nope?healthy=maybe", "", "", nil, 400},
		{"wrong method", "POST", "/v1/nodes", "", "", nil, 405},
		{"wrong method on kv", "PATCH", "/v1/kv/k", "", "", nil, 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := ts.do(t, c.method, c.path, c.ctype, c.body, c.header...)
			if code != c.want {
				t.Fatalf("%s %s: got %d, want %d: %s", c.method, c.path, code, c.want, body)
			}
			var e errorBody
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Fatalf("body is not a JSON error: %q", body)
			}
		})
	}
	after, _ := ts.node.State("n1")
	if !maps.Equal(before, after) {
		t.Fatalf("state changed by bad requests: %v → %v", before, after)
	}
	if ts.srv.decom.isOut("n2") {
		t.Fatal("n2 decommissioned by a bad request")
	}
}

func TestWritesNeedTokenBeyondLoopback(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: false})
	code, body := ts.do(t, "PUT", "/v1/kv/k", "", "v")
	if code != 403 || !strings.Contains(body, "-token") {
		t.Fatalf("PUT without token beyond loopback: %d %s", code, body)
	}
	if code, _ := ts.do(t, "GET", "/v1/nodes", "", ""); code != 200 {
		t.Fatalf("reads must stay open: %d", code)
	}
}

func TestServices(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	ts.node.set("n2", "svc/web/aaaaaaaaaaaa/80/tcp", record("web", "aaaaaaaaaaaa", 31000, docker.HealthHealthy))
	ts.node.set("n3", "svc/web/bbbbbbbbbbbb/80/tcp", record("web", "bbbbbbbbbbbb", 31001, docker.HealthUnhealthy))
	ts.node.set("n3", "svc/db/cccccccccccc/80/tcp", record("db", "cccccccccccc", 31002, docker.HealthNone))
	ts.hub.publish(event{Type: "update"})

	code, body := ts.do(t, "GET", "/services.json", "", "")
	var all map[string][]instanceView
	if code != 200 || json.Unmarshal([]byte(body), &all) != nil || len(all["web"]) != 2 || len(all["db"]) != 1 {
		t.Fatalf("/services.json: %d %s", code, body)
	}
	if !strings.Contains(body, "\n  \"db\"") {
		t.Fatalf("/services.json is not pretty-printed: %s", body)
	}
	code, body = ts.do(t, "GET", "/services.json", "", "", "Accept-Encoding", "gzip")
	if code != 200 {
		t.Fatalf("gzip: %d", code)
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatalf("gzip body: %v", err)
	}
	if plain, _ := io.ReadAll(zr); !strings.Contains(string(plain), "bbbbbbbbbbbb") {
		t.Fatal("gzip body lacks an instance")
	}
	code, body = ts.do(t, "GET", "/services", "", "")
	if code != 200 || !strings.Contains(body, "web: 2 instances, 1 healthy") {
		t.Fatalf("/services: %d %s", code, body)
	}
	code, body = ts.do(t, "GET", "/v1/services/web?healthy=true", "", "")
	var one struct{ Instances []instanceView }
	if code != 200 || json.Unmarshal([]byte(body), &one) != nil || len(one.Instances) != 1 || one.Instances[0].Addr != "10.0.0.1:31000" {
		t.Fatalf("/v1/services/web?healthy=true: %d %s", code, body)
	}
	// A change is seen at once: the cache follows the hub's version.
	ts.node.set("n2", "svc/web/dddddddddddd/80/tcp", record("web", "dddddddddddd", 31003, docker.HealthHealthy))
	ts.hub.publish(event{Type: "update"})
	if _, body := ts.do(t, "GET", "/services.json", "", ""); !strings.Contains(body, "dddddddddddd") {
		t.Fatal("cache not rebuilt after a change")
	}
	// A key written through the API is a record too.
	if code, body := ts.do(t, "PUT", "/v1/kv/svc/api/eeeeeeeeeeee/80/tcp", "", record("api", "eeeeeeeeeeee", 1, "none")); code != 200 {
		t.Fatalf("PUT record: %d %s", code, body)
	}
	if code, _ := ts.do(t, "GET", "/v1/services/api", "", ""); code != 200 {
		t.Fatalf("service published through the API not listed: %d", code)
	}
}

func TestDecommissionMarker(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	code, body := ts.do(t, "POST", "/v1/nodes/n2/decommission", "", "")
	if code != 202 {
		t.Fatalf("POST: %d %s", code, body)
	}
	v, ok := ts.node.Lookup("n1", "decommission/n2")
	m, good := decodeMarker(v)
	if !ok || !good || m.By != "n1" || m.Cleared {
		t.Fatalf("marker %q", v)
	}
	if code, _ := ts.do(t, "POST", "/v1/nodes/n2/decommission", "", ""); code != 200 {
		t.Fatalf("POST again: %d, want 200", code)
	}
	_, body = ts.do(t, "GET", "/v1/nodes", "", "")
	if !strings.Contains(body, `"decommissioned": true`) {
		t.Fatalf("/v1/nodes does not show it: %s", body)
	}
	// A marker heard from another node is copied, so it outlives its writer;
	// an older one is not.
	older := marker{At: m.At - 1, By: "n3"}.encode()
	ts.srv.decom.heard("n3", "decommission/n2", older)
	if v2, _ := ts.node.Lookup("n1", "decommission/n2"); v2 != v {
		t.Fatalf("older marker won: %q", v2)
	}
	newer := marker{At: m.At + 10, By: "n3"}.encode()
	ts.srv.decom.heard("n3", "decommission/n4", newer)
	if v2, _ := ts.node.Lookup("n1", "decommission/n4"); v2 != newer {
		t.Fatalf("heard marker not copied: %q", v2)
	}
	if code, _ := ts.do(t, "DELETE", "/v1/nodes/n2/decommission", "", ""); code != 200 {
		t.Fatalf("clear: %d", code)
	}
	if ts.srv.decom.isOut("n2") {
		t.Fatal("still out after clear")
	}
	// Decommissioning this node fires its own exit.
	select {
	case <-ts.srv.decom.fired():
		t.Fatal("fired before")
	default:
	}
	if code, _ := ts.do(t, "POST", "/v1/nodes/n1/decommission", "", ""); code != 202 {
		t.Fatalf("self: %d", code)
	}
	select {
	case <-ts.srv.decom.fired():
	case <-time.After(5 * time.Second):
		t.Fatal("self decommission did not fire")
	}
}

func TestWatchStreams(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	resp, err := http.Get(ts.URL + "/v1/watch?prefix=app/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func(prefix string) string {
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), prefix) {
				return lines.Text()
			}
		}
		t.Fatalf("stream ended before %q: %v", prefix, lines.Err())
		return ""
	}
	next("event: hello")
	ts.do(t, "PUT", "/v1/kv/other", "", "x") // filtered out
	ts.do(t, "PUT", "/v1/kv/app/x", "", "1")
	next("event: update")
	if l := next("data: "); !strings.Contains(l, `"key":"app/x"`) || !strings.Contains(l, `"value":"1"`) {
		t.Fatalf("event %s", l)
	}
}

func TestMetricsParse(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	ts.node.set("n2", "svc/web/aaaaaaaaaaaa/80/tcp", record("web", "aaaaaaaaaaaa", 31000, docker.HealthHealthy))
	ts.hub.publish(event{Type: "update"})
	code, body := ts.do(t, "GET", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("%d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("not Prometheus text: %v", err)
	}
	for _, name := range []string{"scuttlebutt_gossip_rounds_total", "scuttlebutt_packets_dropped_total",
		"scuttlebutt_nodes", "scuttlebutt_peer_phi", "scuttlebutt_service_instances", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("missing %s", name)
		}
	}
	if v := fams["scuttlebutt_gossip_rounds_total"].GetMetric()[0].GetCounter().GetValue(); v != 7 {
		t.Errorf("rounds %v", v)
	}
}

func TestPageRendersWithoutJS(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	ts.node.set("n2", "greeting", "<b>hi</b>")
	code, body := ts.do(t, "GET", "/", "", "")
	if code != 200 {
		t.Fatalf("%d", code)
	}
	for _, want := range []string{`data-node-id="n1"`, `data-node-id="n2"`, `data-node-id="n3"`, "greeting", "&lt;b&gt;hi&lt;/b&gt;", "http-equiv=\"refresh\""} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>hi</b>") {
		t.Error("value not escaped")
	}
}

func TestParseFlagsEnv(t *testing.T) {
	var c agentConfig
	fs := newAgentFlagSet(&c)
	env := map[string]string{"SCUTTLEBUTT_JOIN": "a:1,b:2", "SCUTTLEBUTT_HTTP": "127.0.0.1:1", "SCUTTLEBUTT_DOCKER": "true"}
	rest, err := parseFlags(fs, []string{"-http", "127.0.0.1:2", "extra", "-id", "x"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.http != "127.0.0.1:2" || c.id != "x" || !c.docker || len(c.join) != 2 || !slices.Equal(rest, []string{"extra"}) {
		t.Fatalf("got %+v rest %v", c, rest)
	}
	for _, bad := range [][]string{{"-bind", "nope"}, {"-join", ":1"}, {"-config", "moon"}, {"-http", "x:99999"}} {
		var c agentConfig
		fs := newAgentFlagSet(&c)
		if _, err := parseFlags(fs, bad, func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		if _, err := c.gossipConfig(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkServicesJSON measures the handler of GET /services.json with
// 1,000 instances, without the network: the cost the cache leaves.
func BenchmarkServicesJSON(b *testing.B) {
	n := newFakeNode("n1", "n2", "n3", "n4")
	for i := range 1000 {
		cid := fmt.Sprintf("%012x", i)
		n.set(fmt.Sprintf("n%d", 1+i%4), "svc/svc-"+fmt.Sprint(i%20)+"/"+cid+"/80/tcp",
			record("svc-"+fmt.Sprint(i%20), cid, 20000+i, docker.HealthHealthy))
	}
	h := newHub()
	log := slog.New(slog.DiscardHandler)
	s := newServer(n, h, newDecommissions("n1", log), serverOptions{loopbackOnly: true})
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			req := httptest.NewRequest("GET", "/services.json", nil)
			if gz {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				s.ServeHTTP(w, req)
			}
		})
	}
}

// TestDefaultAgentConfigIsValid: the defaults of every agent flag, which the
// demo starts from, pass the agent's own checks (a flag whose default its
// check refuses broke the demo once).
func TestDefaultAgentConfigIsValid(t *testing.T) {
	c := defaultAgentConfig()
	if _, err := c.gossipConfig(); err != nil {
		t.Fatalf("the agent's defaults are refused: %v", err)
	}
	var zero agentConfig
	if _, err := zero.gossipConfig(); err == nil {
		t.Fatal("a zero agentConfig is accepted: the test above proves nothing")
	}
}
