package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// needTool skips without a program, or fails in CI, which installs it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (Debian's %s; .ci/setup installs it)", name, pkg)
		}
		t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// promTargets is an active target of Prometheus's /api/v1/targets.
type promActiveTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Labels           map[string]string `json:"labels"`
	ScrapePool       string            `json:"scrapePool"`
}

// startPrometheus runs Debian's prometheus on loopback with config (its
// %s the address of the agent) and returns its base URL.
func startPrometheus(t *testing.T, config string) string {
	t.Helper()
	bin := needTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startBg(t, nil, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	base := "http://" + addr
	eventually(t, 30*time.Second, "prometheus is ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited:\n%s", p.out.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return base
}

// activeTargets returns Prometheus's active targets by address.
func activeTargets(base string) map[string]promActiveTarget {
	resp, err := http.Get(base + "/api/v1/targets?state=active")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			ActiveTargets []promActiveTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&out) != nil {
		return nil
	}
	m := map[string]promActiveTarget{}
	for _, tg := range out.Data.ActiveTargets {
		m[tg.DiscoveredLabels["__address__"]] = tg
	}
	return m
}

func targetAddrs(m map[string]promActiveTarget) []string {
	var out []string
	for a := range m {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// TestPrometheusHTTPSD: Debian's real Prometheus, with http_sd_configs at
// an agent's /v1/sd/prometheus, lists the cluster's healthy instances with
// their labels, and drops one when it enters maintenance or fails its check.
func TestPrometheusHTTPSD(t *testing.T) {
	needTool(t, "prometheus", "prometheus")
	bin := binary(t)
	a1 := startAgentProc(t, bin, "prom-1")
	a2 := startAgentProc(t, bin, "prom-2", "-join", a1.addr)
	eventually(t, 15*time.Second, "two live nodes", func() bool { return a2.statusOf("prom-1") == "alive" })

	// web-1: a watched registration on prom-1, with a check.
	svc := &flakyService{}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	startBg(t, []string{"SCUTTLEBUTT_ADDR=" + a1.base}, bin, "watch", "-label", "web", "-service-id", "web-1",
		"-monitor-url", srv.URL+"/health", "-host-ip", "127.0.0.31", "-port", port, "-interval", "200ms", "-fall", "2", "-ttl", "3s")
	// web-2: a container's record on prom-2, with exported labels.
	rec := `{"v":1,"svc":"web","cid":"0123456789ab","name":"web-2","img":"acme/web:2","host":"127.0.0.32","port":9100,"priv":80,` +
		`"proto":"tcp","tags":["blue","v2"],"labels":{"com.acme.team":"core"},"health":"healthy","state":"running"}`
	a2.mustRequest("PUT", "/v1/kv/svc/web/0123456789ab/80/tcp", rec, 200)
	// Another service, not asked for.
	a2.mustRequest("PUT", "/v1/kv/svc/db/0123456789ac/5432/tcp", strings.ReplaceAll(strings.ReplaceAll(rec, `"web"`, `"db"`), "9100", "5432"), 200)

	prom := startPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1m
scrape_configs:
  - job_name: scuttlebutt-web
    http_sd_configs:
      - url: %s/v1/sd/prometheus?service=web
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_scuttlebutt_node]
        target_label: node
`, a2.base))

	web1 := "127.0.0.31:" + port
	var got map[string]promActiveTarget
	eventually(t, 30*time.Second, "prometheus lists web-1 and web-2", func() bool {
		got = activeTargets(prom)
		return slices.Equal(targetAddrs(got), []string{web1, "127.0.0.32:9100"})
	})
	w2 := got["127.0.0.32:9100"]
	for k, want := range map[string]string{
		"__meta_scuttlebutt_service": "web", "__meta_scuttlebutt_node": "prom-2", "__meta_scuttlebutt_tags": ",blue,v2,",
		"__meta_scuttlebutt_container_id": "0123456789ab", "__meta_scuttlebutt_container_name": "web-2",
		"__meta_scuttlebutt_image": "acme/web:2", "__meta_scuttlebutt_label_com_acme_team": "core", "job": "scuttlebutt-web",
	} {
		if w2.DiscoveredLabels[k] != want {
			t.Errorf("web-2: discovered label %s = %q, want %q (all: %v)", k, w2.DiscoveredLabels[k], want, w2.DiscoveredLabels)
		}
	}
	if w2.Labels["node"] != "prom-2" || got[web1].Labels["node"] != "prom-1" {
		t.Errorf("relabelled node: %v, %v", w2.Labels, got[web1].Labels)
	}

	// web-2 enters maintenance (scuttlebutt maint against its agent): dropped.
	if code, out, errs := runCLIProc(bin, a2.base, "maint", "-enable", "-service-id", "web-2", "-reason", "deploy 2.1"); code != 0 ||
		!strings.Contains(out, "deploy 2.1") {
		t.Fatalf("maint -enable: %d %q %q", code, out, errs)
	}
	eventually(t, 15*time.Second, "prometheus drops web-2 in maintenance", func() bool {
		return slices.Equal(targetAddrs(activeTargets(prom)), []string{web1})
	})
	// web-1 fails its check: dropped.
	svc.mode.Store(serve500)
	eventually(t, 15*time.Second, "prometheus drops web-1 failing", func() bool { return len(activeTargets(prom)) == 0 })
	// Both back.
	svc.mode.Store(serveOK)
	if code, _, errs := runCLIProc(bin, a2.base, "maint", "-disable", "-service-id", "web-2"); code != 0 {
		t.Fatalf("maint -disable: %d %q", code, errs)
	}
	eventually(t, 15*time.Second, "prometheus lists both again", func() bool { return len(activeTargets(prom)) == 2 })
}
