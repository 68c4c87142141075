package consulsd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// startAgent builds and starts `scuttlebutt agent` on loopback and returns
// the base URL of its HTTP API.
func startAgent(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test with the built binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "scuttlebutt")
	build := exec.Command("go", "build", "-o", bin, "./scuttlebutt")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "agent", "-id", "consulsd-1", "-bind", "127.0.0.1:0", "-http", "127.0.0.1:0",
		"-dns", "", "-config", "local", "-cluster", "promdc", "-log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "agent started" {
				h, _ := m["http"].(string)
				addr <- h
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not start")
	}
	return ""
}

func request(t *testing.T, method, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d", method, url, resp.StatusCode)
	}
}

// register publishes web-ID through the registrations API with a check
// status.
func register(t *testing.T, base, id string, port int, status string) {
	t.Helper()
	request(t, "PUT", base+"/v1/registrations/web/"+id,
		fmt.Sprintf(`{"host":"127.0.0.51","port":%d,"tags":["v1"],"ttl":"1m","check":{"status":%q}}`, port, status))
}

// TestPrometheusConsulSD: the target groups of Prometheus's Consul
// discovery follow the cluster through blocking queries, with
// __meta_consul_health passing, maintenance and critical as an instance
// changes.
func TestPrometheusConsulSD(t *testing.T) {
	base := startAgent(t)
	register(t, base, "web-1", 8081, "passing")
	register(t, base, "web-2", 8082, "passing")

	conf := consul.DefaultSDConfig
	conf.Server = strings.TrimPrefix(base, "http://")
	conf.Services = []string{"web"}
	conf.RefreshInterval = model.Duration(100 * time.Millisecond)
	reg := prometheus.NewRegistry()
	metrics := conf.NewDiscovererMetrics(reg, discovery.NewRefreshMetrics(reg))
	if err := metrics.Register(); err != nil {
		t.Fatal(err)
	}
	defer metrics.Unregister()
	d, err := consul.NewDiscovery(&conf, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan []*targetgroup.Group, 16)
	go d.Run(ctx, ch)

	// await reads target groups until the targets' health is want.
	await := func(what string, want map[string]string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		var last map[string]string
		for {
			select {
			case groups := <-ch:
				for _, g := range groups {
					if g == nil || g.Source != "web" {
						continue
					}
					last = map[string]string{}
					for _, tg := range g.Targets {
						tg = g.Labels.Merge(tg)
						last[string(tg[model.AddressLabel])] = string(tg["__meta_consul_health"])
						if tg["__meta_consul_dc"] != "promdc" || tg["__meta_consul_service"] != "web" || tg["__meta_consul_tags"] != ",v1," ||
							tg["__meta_consul_node"] != "consulsd-1" || tg["__meta_consul_service_address"] != "127.0.0.51" {
							t.Errorf("labels %v", tg)
						}
					}
				}
				if fmt.Sprint(last) == fmt.Sprint(want) {
					return
				}
			case <-deadline:
				t.Fatalf("%s: targets %v, want %v", what, last, want)
			}
		}
	}
	await("both passing", map[string]string{"127.0.0.51:8081": "passing", "127.0.0.51:8082": "passing"})
	request(t, "PUT", base+"/v1/maintenance/web-1", `{"reason":"deploy"}`)
	await("web-1 in maintenance", map[string]string{"127.0.0.51:8081": "maintenance", "127.0.0.51:8082": "passing"})
	register(t, base, "web-2", 8082, "failing")
	await("web-2 failing", map[string]string{"127.0.0.51:8081": "maintenance", "127.0.0.51:8082": "critical"})
	request(t, "DELETE", base+"/v1/maintenance/web-1", "")
	register(t, base, "web-2", 8082, "passing")
	await("both passing again", map[string]string{"127.0.0.51:8081": "passing", "127.0.0.51:8082": "passing"})
}
