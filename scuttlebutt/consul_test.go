package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

func newConsulClient(t *testing.T, ts *testServer) *consul.Client {
	t.Helper()
	c, err := consul.NewClient(&consul.Config{Address: strings.TrimPrefix(ts.URL, "http://"), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsulCompatibleAPI(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true, cluster: "dc-test"})
	ts.node.set("n2", roleKey, "server")
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-1", Host: "10.0.0.1", Port: 8080, Tags: []string{"blue", "v1"},
		Labels: map[string]string{"team": "core"}})
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-2", Host: "10.0.0.2", Port: 8081, Tags: []string{"green"}})
	ts.putInstance("n3", docker.Record{Service: "web", Name: "web-3", Host: "10.0.0.3", Port: 8082, Maint: "deploy"})
	ts.putInstance("n3", docker.Record{Service: "web", Name: "web-4", Host: "10.0.0.4", Port: 8083, Health: docker.HealthUnhealthy})
	ts.node.set("n1", "svc/db/0123456789ab/5432/tcp", record("db", "0123456789ab", 5432, docker.HealthHealthy))
	c := newConsulClient(t, ts)

	self, err := c.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "dc-test" || self["Config"]["NodeName"] != "n1" {
		t.Fatalf("Agent().Self: %v %v", self, err)
	}
	svcs, meta, err := c.Catalog().Services(nil)
	if err != nil || len(svcs) != 2 || strings.Join(svcs["web"], ",") != "blue,green,v1" || meta.LastIndex == 0 {
		t.Fatalf("Catalog().Services: %v %+v %v", svcs, meta, err)
	}
	cat, _, err := c.Catalog().Service("web", "", nil)
	if err != nil || len(cat) != 4 || cat[0].ServiceID != "web-1" || cat[0].ServiceAddress != "10.0.0.1" || cat[0].ServicePort != 8080 ||
		cat[0].Node != "n1" || cat[0].Address != "127.0.0.1" || cat[0].ServiceMeta["team"] != "core" || cat[0].Datacenter != "dc-test" {
		t.Fatalf("Catalog().Service: %+v %v", cat, err)
	}
	if cat, _, err := c.Catalog().Service("web", "green", nil); err != nil || len(cat) != 1 || cat[0].ServiceID != "web-2" {
		t.Fatalf("Catalog().Service with a tag: %+v %v", cat, err)
	}
	if cat, _, _ := c.Catalog().Service("db", "", nil); len(cat) != 1 || cat[0].ServiceID != "db-01:80/tcp" {
		t.Fatalf("a container's service ID: %+v", cat)
	}
	nodes, _, err := c.Catalog().Nodes(nil)
	if err != nil || len(nodes) != 3 || nodes[1].Node != "n2" || nodes[1].Meta["role"] != "server" {
		t.Fatalf("Catalog().Nodes: %+v %v", nodes, err)
	}
	if nodes, _, _ := c.Catalog().Nodes(&consul.QueryOptions{NodeMeta: map[string]string{"role": "server"}}); len(nodes) != 1 {
		t.Fatalf("Catalog().Nodes with node-meta: %+v", nodes)
	}

	entries, _, err := c.Health().Service("web", "", true, nil)
	if err != nil || len(entries) != 2 || entries[0].Service.ID != "web-1" || entries[1].Service.ID != "web-2" {
		t.Fatalf("Health().Service passing: %+v %v", entries, err)
	}
	all, _, err := c.Health().Service("web", "", false, nil)
	if err != nil || len(all) != 4 {
		t.Fatalf("Health().Service all: %+v %v", all, err)
	}
	status := map[string]string{}
	for _, e := range all {
		status[e.Service.ID] = e.Checks.AggregatedStatus()
	}
	if status["web-1"] != "passing" || status["web-2"] != "passing" || status["web-3"] != "maintenance" || status["web-4"] != "critical" {
		t.Errorf("aggregated statuses %v", status)
	}
	for _, e := range all {
		if e.Service.ID == "web-3" {
			found := false
			for _, ch := range e.Checks {
				found = found || ch.CheckID == "_service_maintenance:web-3" && ch.Status == "critical" && ch.Notes == "deploy"
			}
			if !found {
				t.Errorf("web-3's checks: %+v", e.Checks)
			}
		}
	}
	if e, _, _ := c.Health().Service("web", "blue", false, nil); len(e) != 1 {
		t.Errorf("Health().Service with a tag: %+v", e)
	}
	if e, _, _ := c.Health().Service("nope", "", false, nil); len(e) != 0 {
		t.Errorf("unknown service: %+v", e)
	}

	// Node maintenance: _node_maintenance.
	ts.node.set("n2", docker.NodeMaintKey, "kernel")
	ts.hub.publish(event{Type: "update"})
	all, _, _ = c.Health().Service("web", "", false, nil)
	for _, e := range all {
		if e.Service.ID == "web-2" {
			if e.Checks.AggregatedStatus() != "maintenance" || len(e.Checks) != 3 || e.Checks[2].CheckID != "_node_maintenance" {
				t.Errorf("web-2 on a node in maintenance: %+v", e.Checks)
			}
		}
	}
}

func TestConsulBlockingQueries(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-1", Host: "10.0.0.1", Port: 8080})
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-2", Host: "10.0.0.2", Port: 8081})
	c := newConsulClient(t, ts)

	_, meta, err := c.Health().Service("web", "", true, nil)
	if err != nil || meta.LastIndex == 0 {
		t.Fatalf("first: %+v %v", meta, err)
	}
	idx := meta.LastIndex
	if _, m2, _ := c.Health().Service("web", "", true, nil); m2.LastIndex != idx {
		t.Fatalf("unchanged answer, index %d then %d", idx, m2.LastIndex)
	}

	type result struct {
		entries []*consul.ServiceEntry
		meta    *consul.QueryMeta
		err     error
		at      time.Time
	}
	block := func(index uint64) chan result {
		ch := make(chan result, 1)
		go func() {
			e, m, err := c.Health().Service("web", "", true, &consul.QueryOptions{WaitIndex: index, WaitTime: 20 * time.Second})
			ch <- result{e, m, err, time.Now()}
		}()
		return ch
	}
	notYet := func(ch chan result, what string) {
		t.Helper()
		select {
		case r := <-ch:
			t.Fatalf("%s: the blocking query returned: %+v %+v %v", what, r.entries, r.meta, r.err)
		case <-time.After(300 * time.Millisecond): // a query that should stay blocked, for a while
		}
	}
	within := func(ch chan result, since time.Time, what string) result {
		t.Helper()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if d := r.at.Sub(since); d > 200*time.Millisecond {
				t.Errorf("%s: returned after %v, want under 200 ms", what, d)
			}
			return r
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the blocking query did not return", what)
		}
		return result{}
	}

	// Blocked: a change of another service does not return it.
	ch := block(idx)
	notYet(ch, "no change")
	ts.putInstance("n1", docker.Record{Service: "db", Name: "db-1", Host: "10.0.0.9", Port: 5432})
	notYet(ch, "another service changed")
	// An instance fails: it returns, with a higher index, without it.
	changed := time.Now()
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-2", Host: "10.0.0.2", Port: 8081, Health: docker.HealthUnhealthy})
	r := within(ch, changed, "an instance failed")
	if len(r.entries) != 1 || r.entries[0].Service.ID != "web-1" || r.meta.LastIndex <= idx {
		t.Fatalf("after the failure: %+v, index %d (was %d)", r.entries, r.meta.LastIndex, idx)
	}
	idx = r.meta.LastIndex

	// An instance enters maintenance: it returns without it.
	ch = block(idx)
	notYet(ch, "no change")
	changed = time.Now()
	ts.node.set("n1", docker.MaintKey("web-1"), "deploy")
	ts.hub.publish(event{Type: "update"})
	r = within(ch, changed, "an instance entered maintenance")
	if len(r.entries) != 0 || r.meta.LastIndex <= idx {
		t.Fatalf("after the maintenance: %+v, index %d (was %d)", r.entries, r.meta.LastIndex, idx)
	}

	// A short wait ends with the same index; an index not ours answers at once.
	start := time.Now()
	_, m, err := c.Health().Service("web", "", true, &consul.QueryOptions{WaitIndex: r.meta.LastIndex, WaitTime: 200 * time.Millisecond})
	if err != nil || m.LastIndex != r.meta.LastIndex || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("wait 200ms: %+v %v after %v", m, err, time.Since(start))
	}
	start = time.Now()
	if _, m, err := c.Health().Service("web", "", true, &consul.QueryOptions{WaitIndex: 1 << 62}); err != nil || m.LastIndex == 0 || time.Since(start) > time.Second {
		t.Fatalf("a future index: %+v %v after %v", m, err, time.Since(start))
	}

	// Bad input: 400s; an absurd wait is capped, and the query can still be left.
	for _, q := range []string{"index=-1", "index=x", "wait=abc", "wait=-5s", "filter=Service.ID%3D%3D%22x%22", "node-meta=nocolon", "passing=maybe"} {
		resp, err := http.Get(ts.URL + "/v1/health/service/web?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", q, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/health/service/web?passing=1&wait=100000h&index="+
		strconvU(r.meta.LastIndex), nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("a 100000h wait returned within 300 ms")
	}
}

func strconvU(n uint64) string { return strconv.FormatUint(n, 10) }
