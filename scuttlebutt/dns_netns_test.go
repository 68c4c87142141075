package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPrometheusDNSSD: Debian's prometheus with dns_sd_configs, in a
// network namespace whose /etc/resolv.conf names the agent's DNS server on
// port 53 there, lists the SRV targets of a service and drops one in
// maintenance. It needs root and ip(8); it is skipped without them
// (outside CI).
func TestPrometheusDNSSD(t *testing.T) {
	prom := needTool(t, "prometheus", "prometheus")
	needTool(t, "ip", "iproute2")
	needTool(t, "curl", "curl")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for a network namespace")
		}
		t.Skip("needs root for a network namespace")
	}
	bin := binary(t)
	ns := fmt.Sprintf("sbdnssd%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	etc := filepath.Join("/etc/netns", ns)
	t.Cleanup(func() {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, pid := range strings.Fields(string(out)) {
			exec.Command("kill", "-9", pid).Run()
		}
		exec.Command("ip", "netns", "del", ns).Run()
		os.RemoveAll(etc)
	})
	inNS := func(args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	}
	if out, err := inNS("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	startBg(t, nil, "ip", "netns", "exec", ns, bin, "agent", "-id", "dnssd-1", "-bind", "127.0.0.1:0", "-http", "127.0.0.1:7777",
		"-dns", "127.0.0.1:53", "-config", "local")
	cli := func(args ...string) (string, error) {
		out, err := inNS(append([]string{bin}, args...)...).CombinedOutput()
		return string(out), err
	}
	eventually(t, 15*time.Second, "the agent answers in the namespace", func() bool { _, err := cli("members"); return err == nil })
	for i, port := range []int{8081, 8082} {
		rec := fmt.Sprintf(`{"v":1,"svc":"web","name":"web-%d","host":"127.0.0.%d","port":%d,"priv":%d,"proto":"tcp","health":"healthy","state":"running"}`,
			i+1, 61+i, port, port)
		if out, err := cli("kv", "set", fmt.Sprintf("svc/web/web-%d/%d/tcp", i+1, port), rec); err != nil {
			t.Fatalf("kv set: %v %s", err, out)
		}
	}

	dir := t.TempDir()
	config := `global:
  scrape_interval: 1m
scrape_configs:
  - job_name: web-dns
    dns_sd_configs:
      - names: [web.service.scuttlebutt]
        type: SRV
        refresh_interval: 1s
`
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	startBg(t, nil, "ip", "netns", "exec", ns, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address=127.0.0.1:9090", "--log.level=warn")
	targets := func() []string {
		out, err := inNS("curl", "-s", "http://127.0.0.1:9090/api/v1/targets?state=active").Output()
		if err != nil {
			return nil
		}
		var r struct {
			Data struct {
				ActiveTargets []promActiveTarget `json:"activeTargets"`
			} `json:"data"`
		}
		if json.Unmarshal(out, &r) != nil {
			return nil
		}
		var addrs []string
		for _, tg := range r.Data.ActiveTargets {
			if tg.DiscoveredLabels["__meta_dns_name"] != "web.service.scuttlebutt" {
				t.Errorf("labels %v", tg.DiscoveredLabels)
			}
			addrs = append(addrs, tg.DiscoveredLabels["__address__"])
		}
		slices.Sort(addrs)
		return addrs
	}
	want := []string{"7f00003d.addr.scuttlebutt:8081", "7f00003e.addr.scuttlebutt:8082"}
	eventually(t, 30*time.Second, "prometheus lists both SRV targets", func() bool { return slices.Equal(targets(), want) })
	if out, err := cli("maint", "-enable", "-service-id", "web-1", "-reason", "deploy"); err != nil {
		t.Fatalf("maint: %v %s", err, out)
	}
	eventually(t, 15*time.Second, "prometheus drops web-1 in maintenance", func() bool { return slices.Equal(targets(), want[1:]) })
}
