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
