package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestMaintenanceKeptInDataDir: maintenance set with `scuttlebutt maint`
// on an agent with -data-dir is there again after the agent restarts; on
// one without, it is gone (as documented).
func TestMaintenanceKeptInDataDir(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	nodeMaint := func(p *proc) *string {
		var v maintView
		if err := json.Unmarshal([]byte(p.mustRequest("GET", "/v1/maintenance", "", 200)), &v); err != nil {
			t.Fatal(err)
		}
		return v.All
	}
	for _, keep := range []bool{true, false} {
		var extra []string
		if keep {
			extra = []string{"-data-dir", dir}
		}
		p := startAgentProc(t, bin, "kept-1", extra...)
		if code, out, errs := runCLIProc(bin, p.base, "maint", "-enable", "-reason", "moving racks"); code != 0 {
			t.Fatalf("maint -enable: %d %q %q", code, out, errs)
		}
		if keep {
			b, err := os.ReadFile(filepath.Join(dir, "maintenance.json"))
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(filepath.Join(dir, "maintenance.json")); st.Mode().Perm() != 0o600 {
				t.Errorf("maintenance.json has mode %v, want 0600", st.Mode().Perm())
			}
			var f savedMaint
			if json.Unmarshal(b, &f) != nil || f.Keys["maint/node"] != "moving racks" {
				t.Fatalf("maintenance.json: %s", b)
			}
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(15 * time.Second); code != 0 {
			t.Fatalf("the agent exited %d", code)
		}
		p = startAgentProc(t, bin, "kept-1", extra...)
		got := nodeMaint(p)
		switch {
		case keep && (got == nil || *got != "moving racks"):
			t.Errorf("with -data-dir, after a restart: node maintenance %v, want \"moving racks\"", got)
		case !keep && got != nil:
			t.Errorf("without -data-dir, after a restart: node maintenance %q, want none", *got)
		}
		if keep {
			if code, _, errs := runCLIProc(bin, p.base, "maint", "-disable"); code != 0 {
				t.Fatalf("maint -disable: %d %q", code, errs)
			}
			var f savedMaint
			b, _ := os.ReadFile(filepath.Join(dir, "maintenance.json"))
			if json.Unmarshal(b, &f) != nil || len(f.Keys) != 0 {
				t.Errorf("after -disable, maintenance.json: %s", b)
			}
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.wait(15 * time.Second)
	}
}
