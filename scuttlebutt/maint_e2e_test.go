package main

import (
	"net"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMaintenanceSurvivesRestart: an instance registered in maintenance
// (watch -maintenance) stays visible with its reason, leaves `hosts`, and
// is in maintenance again after its agent restarts; one put in
// maintenance with `scuttlebutt maint` comes out with -disable.
func TestMaintenanceSurvivesRestart(t *testing.T) {
	bin := binary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	m1 := startAgentProc(t, bin, "maint-1", "-http", httpAddr)
	m2 := startAgentProc(t, bin, "maint-2", "-join", m1.addr)
	eventually(t, 15*time.Second, "two live nodes", func() bool { return m2.statusOf("maint-1") == "alive" })

	srv := httptest.NewServer(&flakyService{})
	defer srv.Close()
	startBg(t, []string{"SCUTTLEBUTT_ADDR=" + m1.base}, bin, "watch", "-label", "api", "-service-id", "api-1",
		"-monitor-url", srv.URL+"/health", "-interval", "200ms", "-ttl", "3s", "-maintenance", "draining for 2.0")
	startBg(t, []string{"SCUTTLEBUTT_ADDR=" + m1.base}, bin, "watch", "-label", "api", "-service-id", "api-2",
		"-monitor-url", srv.URL+"/health", "-interval", "200ms", "-ttl", "3s")
	inMaint := func(p *proc, id string) (bool, bool) { // seen, in maintenance with the reason
		for _, in := range p.instances("api") {
			if in.Name == id {
				return true, in.Verdict == "maintenance" && in.Maintenance == "draining for 2.0" && !in.Healthy
			}
		}
		return false, false
	}
	eventually(t, 15*time.Second, "maint-2 sees api-1 in maintenance and api-2 passing", func() bool {
		_, m := inMaint(m2, "api-1")
		seen2, m2b := inMaint(m2, "api-2")
		return m && seen2 && !m2b
	})
	if code, out, _ := runCLIProc(bin, m2.base, "hosts", "-label", "api", "-port"); code != 0 || strings.Count(out, ",") != 0 {
		t.Errorf("hosts with api-1 in maintenance: %d %q (want api-2 only)", code, out)
	}
	if code, out, _ := runCLIProc(bin, m2.base, "services", "api"); code != 0 || !strings.Contains(out, "maintenance (draining for 2.0)") {
		t.Errorf("services api: %d\n%s", code, out)
	}

	// The agent restarts: the watcher registers api-1 again, in maintenance.
	m1.cmd.Process.Signal(syscall.SIGTERM)
	if code := m1.wait(15 * time.Second); code != 0 {
		t.Fatalf("maint-1 exited %d", code)
	}
	eventually(t, 15*time.Second, "api-1 gone with its agent", func() bool { seen, _ := inMaint(m2, "api-1"); return !seen })
	m1 = startAgentProc(t, bin, "maint-1", "-http", httpAddr, "-join", m2.addr)
	eventually(t, 20*time.Second, "api-1 back in maintenance after the restart", func() bool { _, m := inMaint(m2, "api-1"); return m })

	// scuttlebutt maint: api-2 in, then the whole node out of its own keys.
	if code, out, errs := runCLIProc(bin, m1.base, "maint", "-enable", "-service-id", "api-2", "-reason", "draining for 2.0"); code != 0 {
		t.Fatalf("maint -enable: %d %q %q", code, out, errs)
	}
	eventually(t, 10*time.Second, "maint-2 sees api-2 in maintenance", func() bool { _, m := inMaint(m2, "api-2"); return m })
	if code, out, _ := runCLIProc(bin, m2.base, "hosts", "-label", "api"); code != exitNotFound {
		t.Errorf("hosts with both in maintenance: %d %q", code, out)
	}
	if code, out, _ := runCLIProc(bin, m1.base, "maint"); code != 0 || !strings.Contains(out, "api-1") || !strings.Contains(out, "api-2") {
		t.Errorf("maint (show): %d\n%s", code, out)
	}
	if code, _, errs := runCLIProc(bin, m1.base, "maint", "-disable", "-service-id", "api-2"); code != 0 {
		t.Fatalf("maint -disable: %d %q", code, errs)
	}
	eventually(t, 10*time.Second, "api-2 out of maintenance", func() bool { seen, m := inMaint(m2, "api-2"); return seen && !m })
	for _, args := range [][]string{{"maint", "-enable", "-disable"}, {"maint", "-reason", "x"}, {"maint", "extra"}} {
		if code, _, _ := runCLIProc(bin, m1.base, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, errs := runCLIProc(bin, m1.base, "maint", "-enable", "-service-id", "nobody"); code != exitNotFound && code != exitError {
		t.Errorf("maint of an unknown ID: %d %q", code, errs)
	}
}
