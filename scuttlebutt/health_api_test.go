package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/lease"
)

// instanceOf returns the one instance of a service in /v1/services/{name}.
func instanceOf(t *testing.T, ts *testServer, service string) (instanceView, bool) {
	t.Helper()
	code, body := ts.do(t, "GET", "/v1/services/"+service, "", "")
	if code == 404 {
		return instanceView{}, false
	}
	var out struct {
		Instances []instanceView `json:"instances"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil || len(out.Instances) != 1 {
		t.Fatalf("/v1/services/%s: %d %s", service, code, body)
	}
	return out.Instances[0], true
}

func report(status, result string) string {
	return fmt.Sprintf(`{"host":"10.0.0.9","port":9200,"info":{"http_port":9200},"ttl":"30s",
		"check":{"status":%q,"checked":"2026-01-01T00:00:00Z","output":"out %s","result":%q,"latency":0.002}}`, status, status, result)
}

// A watcher's registration through the API: its verdict is what every
// reader shows (services, services.json, the page, the metrics); a failing
// instance is shown, as failing, and left out of the healthy ones.
func TestRegistrationAPI(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	put := func(body string) (int, string) {
		return ts.do(t, "PUT", "/v1/registrations/es/es-1", "application/json", body)
	}
	code, body := put(`{"host":"10.0.0.9","port":9200}`)
	if code != 200 || !strings.Contains(body, `"written": true`) {
		t.Fatalf("register: %d %s", code, body)
	}
	in, ok := instanceOf(t, ts, "es")
	if !ok || in.Verdict != "starting" || in.Healthy || in.Key != "svc/es/es-1" || in.Expires == nil {
		t.Fatalf("registered instance %+v", in)
	}
	if code, body := put(report("passing", "pass")); code != 200 || !strings.Contains(body, `"written": true`) {
		t.Fatalf("passing: %d %s", code, body)
	}
	// Nothing new: no write.
	if code, body := put(report("passing", "pass")); code != 200 || !strings.Contains(body, `"written": false`) {
		t.Fatalf("passing again: %d %s", code, body)
	}
	in, _ = instanceOf(t, ts, "es")
	if !in.Healthy || in.Verdict != "passing" || in.Check == nil || in.Check.Checked == nil || !strings.Contains(string(in.Info), `"http_port": 9200`) || in.Addr != "10.0.0.9:9200" {
		t.Fatalf("passing instance %+v", in)
	}
	if code, body := ts.do(t, "GET", "/v1/services/es?healthy=true", "", ""); code != 200 || !strings.Contains(body, "10.0.0.9") {
		t.Fatalf("healthy instances: %d %s", code, body)
	}
	put(report("failing", "fail"))
	put(report("failing", "timeout"))
	in, _ = instanceOf(t, ts, "es")
	if in.Healthy || in.Verdict != "failing" || in.Health != docker.HealthUnhealthy || in.Check.Output != "out failing" {
		t.Fatalf("failing instance %+v", in)
	}
	if _, body := ts.do(t, "GET", "/v1/services/es?healthy=true", "", ""); strings.Contains(body, "10.0.0.9") {
		t.Fatalf("failing instance among the healthy: %s", body)
	}
	if _, body := ts.do(t, "GET", "/services.json", "", ""); !strings.Contains(body, `"verdict": "failing"`) {
		t.Fatalf("/services.json: %s", body)
	}
	if _, body := ts.do(t, "GET", "/", "", ""); !strings.Contains(body, `class="health-failing"`) || !strings.Contains(body, "out failing") {
		t.Fatalf("the page does not show the failing instance:\n%s", body)
	}
	if _, body := ts.do(t, "GET", "/v1/registrations", "", ""); !strings.Contains(body, `"key": "svc/es/es-1"`) {
		t.Fatalf("/v1/registrations: %s", body)
	}

	// The metrics count the reported checks by result.
	_, metrics := ts.do(t, "GET", "/metrics", "", "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range fams["scuttlebutt_health_checks_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		got[labels["source"]+"/"+labels["result"]] = m.GetCounter().GetValue()
	}
	if got["watch/pass"] != 2 || got["watch/fail"] != 1 || got["watch/timeout"] != 1 || got["docker/pass"] != 0 {
		t.Errorf("checks counted %v", got)
	}
	if h := fams["scuttlebutt_health_check_duration_seconds"].GetMetric(); len(h) != 2 {
		t.Errorf("latency histograms: %v", h)
	}

	// Bad requests.
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/v1/registrations/es/es-1", `{"host":"h","nope":1}`, 400},
		{"/v1/registrations/es/es-1", `{"host":"h","check":{"status":"great"}}`, 400},
		{"/v1/registrations/es/es-1", `{"host":"h","check":{"status":"passing","result":"maybe"}}`, 400},
		{"/v1/registrations/es/es-1", `{"host":"h","ttl":"1ms"}`, 400},
		{"/v1/registrations/es/es-1", `{"host":""}`, 400},
		{"/v1/registrations/e%20s/es-1", `{"host":"h"}`, 400},
		{"/v1/registrations/es/es-1", `{"host":"h","info":{"a":` + `"` + strings.Repeat("x", 900) + `"}}`, 413},
	} {
		if code, body := ts.do(t, "PUT", tc.path, "application/json", tc.body); code != tc.want {
			t.Errorf("PUT %s %s: %d %s, want %d", tc.path, tc.body, code, body, tc.want)
		}
	}
	if code, _ := ts.do(t, "DELETE", "/v1/registrations/es/es-1", "", ""); code != 204 {
		t.Fatalf("withdraw: %d", code)
	}
	if _, ok := instanceOf(t, ts, "es"); ok {
		t.Fatal("withdrawn instance still listed")
	}
	if code, _ := ts.do(t, "DELETE", "/v1/registrations/es/es-1", "", ""); code != 404 {
		t.Fatalf("withdraw again: %d", code)
	}
}

// A registration whose watcher stops reporting is withdrawn after its TTL;
// a record of another node whose TTL runs out turns expired in every view
// without any change in the cluster.
func TestRegistrationTTL(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	if code, body := ts.do(t, "PUT", "/v1/registrations/es/es-1", "application/json", `{"host":"h","ttl":"1s"}`); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	eventually(t, 5*time.Second, "the silent registration withdrawn", func() bool {
		_, ok := ts.node.Lookup("n1", "svc/es/es-1")
		return !ok
	})

	// Another node's record: its expiry time (by that node's clock, here an
	// hour behind) is not compared with this one's; the record expires when
	// its publisher marks it so.
	r := docker.Record{V: 1, Service: "db", Name: "db-1", Host: "10.0.0.2", Port: 5432, Proto: "tcp", Health: docker.HealthHealthy,
		State: docker.StateRunning, Check: &docker.Check{Status: "passing"}, Expires: time.Now().Add(-time.Hour).UnixMilli()}
	b, _ := json.Marshal(r)
	ts.node.set("n2", "svc/db/db-1", string(b))
	ts.hub.publish(event{Type: "update", Node: "n2", Key: "svc/db/db-1"})
	if in, _ := instanceOf(t, ts, "db"); !in.Healthy || in.Expired {
		t.Fatalf("fresh record: %+v", in)
	}
	_, etag := ts.do(t, "GET", "/services.json", "", "")
	r.Check, r.Health = &docker.Check{Status: docker.CheckExpired}, docker.HealthUnhealthy
	b, _ = json.Marshal(r)
	ts.node.set("n2", "svc/db/db-1", string(b))
	ts.hub.publish(event{Type: "update", Node: "n2", Key: "svc/db/db-1"})
	if in, _ := instanceOf(t, ts, "db"); !in.Expired || in.Healthy || in.Verdict != "expired" {
		t.Fatalf("record marked expired: %+v", in)
	}
	if _, body := ts.do(t, "GET", "/services.json", "", ""); body == etag || !strings.Contains(body, `"expired": true`) {
		t.Fatalf("/services.json not rebuilt at the expiry: %s", body)
	}
}

// awaitLease polls a lease request until it reaches state.
func awaitLease(t *testing.T, ts *testServer, label, id, state string) leaseView {
	t.Helper()
	var v leaseView
	eventually(t, 10*time.Second, fmt.Sprintf("lease %s/%s %s", label, id, state), func() bool {
		code, body := ts.do(t, "GET", "/v1/leases/"+label+"/"+id+"?wait=1s", "", "")
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("GET lease: %d %s", code, body)
		}
		return v.State == state
	})
	return v
}

// Leases through the API: the first request holds, the second waits in
// the queue; the holder's health passing releases it and the second holds;
// release-lease and the maximum hold time end a hold too.
func TestLeaseAPI(t *testing.T) {
	opt := lease.Options{Poll: 10 * time.Millisecond}
	ts := newTestServer(t, serverOptions{loopbackOnly: true, leaseOpts: opt})
	ts.ackAsPeers(t, opt, "n2", "n3")
	if code, body := ts.do(t, "POST", "/v1/leases/es/es-1", "", ""); code != 201 || !strings.Contains(body, `"state": "waiting"`) {
		t.Fatalf("acquire: %d %s", code, body)
	}
	v := awaitLease(t, ts, "es", "es-1", leaseHeld)
	if v.Position != 0 || v.HeldSince == nil || !v.HoldUntilHealthy || v.MaxHold != "5m0s" {
		t.Fatalf("held lease %+v", v)
	}
	if code, _ := ts.do(t, "POST", "/v1/leases/es/es-1", "", ""); code != 200 {
		t.Fatalf("acquire again: %d", code)
	}
	if code, body := ts.do(t, "POST", "/v1/leases/es/es-2", "application/json", `{"max_hold":"1m"}`); code != 201 {
		t.Fatalf("second acquire: %d %s", code, body)
	}
	code, body := ts.do(t, "GET", "/v1/leases/es/es-2?wait=300ms", "", "")
	if code != 200 || !strings.Contains(body, `"state": "waiting"`) || !strings.Contains(body, `"position": 1`) {
		t.Fatalf("second request while the first holds: %d %s", code, body)
	}
	// es-1 comes up healthy: its lease passes on.
	ts.do(t, "PUT", "/v1/registrations/es/es-1", "application/json", report("passing", "pass"))
	v = awaitLease(t, ts, "es", "es-1", leaseReleased)
	if !strings.Contains(v.EndReason, "health check") || v.HeldSince == nil {
		t.Fatalf("released lease %+v", v)
	}
	awaitLease(t, ts, "es", "es-2", leaseHeld)
	if code, body := ts.do(t, "DELETE", "/v1/leases/es/es-2", "", ""); code != 200 || !strings.Contains(body, "release-lease") {
		t.Fatalf("release: %d %s", code, body)
	}
	if _, body := ts.do(t, "GET", "/v1/leases", "", ""); strings.Contains(body, `"es": [`) {
		t.Fatalf("released requests still queued: %s", body)
	}

	// Not held until healthy: the maximum hold time ends it.
	ts.do(t, "POST", "/v1/leases/db/db-1", "application/json", `{"hold_until_healthy":false,"max_hold":"300ms"}`)
	v = awaitLease(t, ts, "db", "db-1", leaseReleased)
	if !strings.Contains(v.EndReason, "maximum hold time") {
		t.Fatalf("max hold: %+v", v)
	}

	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/leases/es/x", `{"max_hold":"soon"}`, 400},
		{"POST", "/v1/leases/es/x", `{"nope":true}`, 400},
		{"GET", "/v1/leases/es/unknown", "", 404},
		{"GET", "/v1/leases/es/x?wait=never", "", 400},
		{"DELETE", "/v1/leases/es/unknown", "", 404},
		{"POST", "/v1/leases/es/" + strings.Repeat("x", 200), "", 400},
	} {
		if code, body := ts.do(t, tc.method, tc.path, "application/json", tc.body); code != tc.want {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, code, body, tc.want)
		}
	}
	// Writes need the token when one is set.
	tok := newTestServer(t, serverOptions{token: "t"})
	if code, _ := tok.do(t, "POST", "/v1/leases/es/es-1", "", ""); code != 401 {
		t.Errorf("acquire without the token: %d", code)
	}
	if code, _ := tok.do(t, "PUT", "/v1/registrations/es/es-1", "application/json", `{"host":"h"}`); code != 401 {
		t.Errorf("register without the token: %d", code)
	}
}
