package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// healthyPorts returns the ports of the healthy instances of service.
func (ts *testServer) healthyPorts(t *testing.T, service string) []int {
	t.Helper()
	var out struct {
		Instances []instanceView `json:"instances"`
	}
	code, body := ts.do(t, "GET", "/v1/services/"+service+"?healthy=true", "", "")
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("GET /v1/services/%s: %d %s", service, code, body)
	}
	var ports []int
	for _, in := range out.Instances {
		ports = append(ports, in.Port)
	}
	return ports
}

func TestMaintenanceAPI(t *testing.T) {
	ts := newTestServer(t, serverOptions{token: "tok", loopbackOnly: true})
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-1", Host: "10.0.0.1", Port: 1})
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-2", Host: "10.0.0.1", Port: 2})
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-3", Host: "10.0.0.2", Port: 3})
	auth := []string{"Authorization", "Bearer tok"}

	// Writes under the token rules.
	if code, _ := ts.do(t, "PUT", "/v1/maintenance/web-1", "application/json", `{"reason":"x"}`); code != 401 {
		t.Fatalf("without the token: %d", code)
	}
	if code, body := ts.do(t, "PUT", "/v1/maintenance/web-9", "application/json", `{}`, auth...); code != 404 {
		t.Fatalf("unknown service ID: %d %s", code, body)
	}
	if code, body := ts.do(t, "PUT", "/v1/maintenance/web-1", "application/json", `{"reason":`, auth...); code != 400 {
		t.Fatalf("bad body: %d %s", code, body)
	}
	if code, body := ts.do(t, "PUT", "/v1/maintenance/web-1", "application/json", `{"reason":"`+strings.Repeat("x", 300)+`"}`, auth...); code != 413 {
		t.Fatalf("long reason: %d %s", code, body)
	}
	if code, body := ts.do(t, "PUT", "/v1/kv/maint/node", "text/plain", "x", auth...); code != 400 {
		t.Fatalf("maint/ keys through /v1/kv: %d %s", code, body)
	}

	code, body := ts.do(t, "PUT", "/v1/maintenance/web-1", "application/json", `{"reason":"deploy 1.3"}`, auth...)
	var v maintView
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Services["web-1"] != "deploy 1.3" || len(v.Instances) != 1 ||
		v.Instances[0].Verdict != "maintenance" || v.Instances[0].Maintenance != "deploy 1.3" || v.Instances[0].Healthy {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if got := ts.healthyPorts(t, "web"); len(got) != 2 || got[0] == 1 || got[1] == 1 {
		t.Errorf("healthy after web-1's maintenance: %v", got)
	}
	// Still visible, with its reason, in /v1/services and the text page.
	if _, body := ts.do(t, "GET", "/services", "", ""); !strings.Contains(body, "maintenance") {
		t.Errorf("/services:\n%s", body)
	}

	// The whole node, Consul's way.
	if code, body := ts.do(t, "PUT", "/v1/agent/maintenance?enable=true&reason=kernel", "", "", auth...); code != 200 {
		t.Fatalf("Consul's node maintenance: %d %s", code, body)
	}
	if got := ts.healthyPorts(t, "web"); len(got) != 1 || got[0] != 3 {
		t.Errorf("healthy after the node's maintenance: %v", got)
	}
	if code, _ := ts.do(t, "PUT", "/v1/agent/maintenance?enable=maybe", "", "", auth...); code != 400 {
		t.Errorf("enable=maybe: %d", code)
	}
	if code, _ := ts.do(t, "DELETE", "/v1/maintenance", "", "", auth...); code != 200 {
		t.Fatal("DELETE node maintenance")
	}
	if code, _ := ts.do(t, "PUT", "/v1/agent/service/maintenance/web-1?enable=false", "", "", auth...); code != 200 {
		t.Fatal("Consul's service maintenance off")
	}
	if got := ts.healthyPorts(t, "web"); len(got) != 3 {
		t.Errorf("healthy after the end of maintenance: %v", got)
	}
	_, body = ts.do(t, "GET", "/v1/maintenance", "", "")
	v = maintView{}
	if json.Unmarshal([]byte(body), &v) != nil || v.All != nil || len(v.Services) != 0 || len(v.Instances) != 0 {
		t.Errorf("GET after: %s", body)
	}
}

func TestPromSD(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	code, body := ts.do(t, "GET", "/v1/sd/prometheus", "", "")
	if code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("empty: %d %q", code, body)
	}
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-1", Container: "0123456789ab", Image: "acme/web:1",
		Host: "10.0.0.1", Port: 8080, Tags: []string{"blue", "v1"}, Labels: map[string]string{"com.acme.team": "core"}})
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-2", Host: "10.0.0.2", Port: 8081, Tags: []string{"green"}})
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-3", Host: "10.0.0.3", Port: 8082, Maint: "deploy"})
	ts.putInstance("n3", docker.Record{Service: "db", Name: "db-1", Host: "10.0.0.4", Port: 5432, Health: docker.HealthUnhealthy})
	ts.putInstance("n3", docker.Record{Service: "api", Name: "api-1", Host: "10.0.0.5", Port: 80})

	get := func(q string) []promTargetGroup {
		req := "/v1/sd/prometheus" + q
		code, body := ts.do(t, "GET", req, "", "")
		var out []promTargetGroup
		if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("GET %s: %d %s", req, code, body)
		}
		return out
	}
	all := get("")
	var targets []string
	for _, g := range all {
		targets = append(targets, g.Targets...)
	}
	if strings.Join(targets, " ") != "10.0.0.5:80 10.0.0.1:8080 10.0.0.2:8081" {
		t.Errorf("targets %v: want the healthy ones, not in maintenance or failing", targets)
	}
	web := get("?service=web&tag=blue")
	if len(web) != 1 {
		t.Fatalf("web, blue: %+v", web)
	}
	l := web[0].Labels
	for k, want := range map[string]string{
		"__meta_scuttlebutt_service": "web", "__meta_scuttlebutt_node": "n1", "__meta_scuttlebutt_tags": ",blue,v1,",
		"__meta_scuttlebutt_container_id": "0123456789ab", "__meta_scuttlebutt_container_name": "web-1",
		"__meta_scuttlebutt_image": "acme/web:1", "__meta_scuttlebutt_label_com_acme_team": "core",
		"__meta_scuttlebutt_service_id": "web-1", "__meta_scuttlebutt_port": "8080", "__meta_scuttlebutt_health": "healthy",
	} {
		if l[k] != want {
			t.Errorf("label %s = %q, want %q", k, l[k], want)
		}
	}
	if g := get("?service=web&tag=green"); len(g) != 1 || g[0].Labels["__meta_scuttlebutt_container_id"] != "" {
		t.Errorf("a registration has no container labels: %+v", g)
	}
	if g := get("?service=nope"); len(g) != 0 {
		t.Errorf("unknown service: %+v", g)
	}
}
