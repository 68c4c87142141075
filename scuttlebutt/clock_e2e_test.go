package main

import (
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// healthyIDs returns the service IDs of es that an agent shows healthy.
func healthyIDs(p *proc) []string {
	var out []string
	for _, in := range p.instances("es") {
		if in.Healthy {
			out = append(out, in.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Three agents whose wall clocks are 10 minutes behind, right, and 10
// minutes ahead (SCUTTLEBUTT_TEST_CLOCK_OFFSET), the last stepping an hour
// back while the test runs, each with a watcher of its own service: every
// agent shows the three services healthy all along while their checks
// pass, through the step; a watcher killed with -9 leaves its service
// expired on every agent within the TTL plus the spread.
func TestDaemonClockSkew(t *testing.T) {
	bin := binary(t)
	const (
		ttl    = 3 * time.Second
		spread = 2 * time.Second // 20 gossip rounds of -config local
		step   = 8 * time.Second // after ck-3's start: +10m becomes -50m
	)
	offsets := []string{"-10m", "0", "+10m,-50m@" + step.String()}
	var agents []*proc
	for i, off := range offsets {
		var extra []string
		if i > 0 {
			extra = []string{"-join", agents[0].addr}
		}
		agents = append(agents, startAgentProcEnv(t, bin, "ck-"+strconv.Itoa(i+1), []string{testClockEnv + "=" + off}, extra...))
	}
	stepAt := time.Now().Add(step)
	for _, p := range agents {
		eventually(t, 15*time.Second, p.id+" sees three live nodes", func() bool {
			ns := p.nodes()
			return ns["ck-1"].Status == "alive" && ns["ck-2"].Status == "alive" && ns["ck-3"].Status == "alive"
		})
	}
	srv := httptest.NewServer(&flakyService{})
	defer srv.Close()
	var watchers []*bgProc
	for i, a := range agents {
		watchers = append(watchers, startBg(t, []string{"SCUTTLEBUTT_ADDR=" + a.base}, bin, "watch", "-label", "es",
			"-service-id", "es-"+strconv.Itoa(i+1), "-monitor-url", srv.URL+"/health", "-interval", "200ms", "-ttl", ttl.String()))
	}
	all := []string{"es-1", "es-2", "es-3"}
	eventually(t, 15*time.Second, "three healthy services on every agent", func() bool {
		for _, p := range agents {
			if strings.Join(healthyIDs(p), ",") != strings.Join(all, ",") {
				return false
			}
		}
		return true
	})
	// Healthy everywhere through ck-3's step, and two TTLs past it.
	for end := stepAt.Add(2 * ttl); time.Now().Before(end); time.Sleep(100 * time.Millisecond) { // polling interval
		for _, p := range agents {
			if got := healthyIDs(p); strings.Join(got, ",") != strings.Join(all, ",") {
				t.Fatalf("%s shows healthy %v while every check passes (%v after ck-3's step)", p.id, got, time.Since(stepAt).Round(time.Millisecond))
			}
		}
	}
	// ck-3 did step: the expiry it stamps on its record (for old readers)
	// is by its clock, now 50 minutes behind.
	var regs struct {
		Registrations []registrationView `json:"registrations"`
	}
	if err := json.Unmarshal([]byte(agents[2].mustRequest("GET", "/v1/registrations", "", 200)), &regs); err != nil || len(regs.Registrations) != 1 {
		t.Fatalf("ck-3's registrations: %+v, %v", regs, err)
	}
	if exp := time.UnixMilli(regs.Registrations[0].Record.Expires); time.Until(exp) > -40*time.Minute {
		t.Fatalf("ck-3's record expires at %v by its clock: it did not step back", exp)
	}

	// The watchers of the agents behind and stepped are killed with -9.
	for _, i := range []int{0, 2} {
		watchers[i].cmd.Process.Kill()
		killed := time.Now()
		id := "es-" + strconv.Itoa(i+1)
		for _, p := range agents {
			eventually(t, ttl+spread+time.Second, p.id+" stops showing "+id+" healthy", func() bool {
				for _, h := range healthyIDs(p) {
					if h == id {
						return false
					}
				}
				return true
			})
		}
		t.Logf("%s's watcher killed: not healthy on any agent after %v (TTL %v)", id, time.Since(killed).Round(time.Millisecond), ttl)
	}
	for _, p := range agents {
		if got := healthyIDs(p); len(got) != 1 || got[0] != "es-2" {
			t.Errorf("%s shows healthy %v at the end, want es-2", p.id, got)
		}
	}
}

// Five agents joining through a registry (S3 on gofakes3, and a
// directory), with clocks from 10 minutes ahead (r1, the one that purges)
// to 10 minutes behind: they form one cluster with exactly three servers,
// one bootstrapping, and no agent purges a live heartbeat: every entry
// stays in the registry, live, through two expiries.
func TestRegistryAgentsClockSkew(t *testing.T) {
	bin := binary(t)
	for _, kind := range []string{"s3", "file"} {
		t.Run(kind, func(t *testing.T) {
			const expiry = 4 * time.Second
			st := newRegStore(t, kind)
			offsets := []string{"10m", "5m", "0", "-5m", "-10m"}
			ids := []string{"r1", "r2", "r3", "r4", "r5"}
			var all []*proc
			for i, id := range ids {
				p := startAgentProcEnv(t, bin, id, []string{testClockEnv + "=" + offsets[i]},
					"-registry", st.url, "-registry-expiry", expiry.String(), "-servers", "3")
				eventually(t, 20*time.Second, id+" chooses its role", func() bool { _, ok := p.logLine("role chosen"); return ok })
				all = append(all, p)
			}
			for _, p := range all {
				eventually(t, 20*time.Second, p.id+" sees five live nodes", func() bool {
					ns := p.nodes()
					for _, id := range ids {
						if ns[id].Status != "alive" {
							return false
						}
					}
					return true
				})
			}
			servers, boot := 0, 0
			for _, n := range all[2].nodes() {
				if n.Role == "server" {
					servers++
				}
				if n.Bootstrap {
					boot++
				}
			}
			if servers != 3 || boot != 1 {
				t.Fatalf("%d servers, %d bootstrapping; want 3 and 1", servers, boot)
			}
			for end := time.Now().Add(2 * expiry); time.Now().Before(end); time.Sleep(200 * time.Millisecond) { // polling interval
				es := st.list(t)
				beats, fresh := 0, 0
				for _, e := range es {
					if !e.IsSlot() {
						beats++
						if e.Aged && e.Age < expiry { // by the store's clock
							fresh++
						}
					}
				}
				if beats != len(ids) || fresh != len(ids) {
					t.Fatalf("%d heartbeats in the registry, %d younger than the expiry by the store's clock; want %d: %+v", beats, fresh, len(ids), es)
				}
			}
		})
	}
}
