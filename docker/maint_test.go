package docker

import (
	"strings"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

func TestMaintenanceView(t *testing.T) {
	mk := func(name string, port int, maint string) (string, string) {
		r := Record{V: 1, Service: "web", Name: name, Host: "10.0.0.1", Port: port, Private: port, Proto: "tcp",
			Health: HealthHealthy, State: StateRunning, Maint: maint}
		return KeyPrefix + "web/" + name, encodeRecord(r)
	}
	states := map[string]map[string]string{"a": {}, "b": {}, "c": {}}
	put := func(node, name string, port int, maint string) {
		k, v := mk(name, port, maint)
		states[node][k] = v
	}
	put("a", "web-1", 1, "")
	put("a", "web-2", 2, "deploy 42") // in the record: label or registration
	put("a", "web-3", 3, "")
	states["a"][MaintKey("web-3")] = "" // the key, without a reason
	put("b", "web-4", 4, "")
	states["b"][NodeMaintKey] = "kernel upgrade" // the whole node
	put("c", "web-5", 5, "")
	states["c"][MaintKey("web-other")] = "not this one"
	c := fakeCluster{nodes: []scuttlebutt.NodeInfo{
		{ID: "a", Status: scuttlebutt.StatusAlive}, {ID: "b", Status: scuttlebutt.StatusAlive}, {ID: "c", Status: scuttlebutt.StatusAlive},
	}, states: states}

	now := time.Now()
	got := map[int]string{}
	for _, in := range Instances(c, "web", false) {
		got[in.Port] = in.Verdict(now) + ":" + in.Maint
		if in.Maint != "" && in.HealthyAt(now) {
			t.Errorf("port %d in maintenance but healthy", in.Port)
		}
	}
	want := map[int]string{1: "healthy:", 2: "maintenance:deploy 42", 3: "maintenance:" + DefaultMaintReason,
		4: "maintenance:kernel upgrade", 5: "healthy:"}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("port %d: %q, want %q", p, got[p], w)
		}
	}
	var healthy []int
	for _, in := range Instances(c, "web", true) {
		healthy = append(healthy, in.Port)
	}
	if !equalInts(healthy, []int{1, 5}) {
		t.Errorf("healthy %v, want [1 5]", healthy)
	}
	// Instances in maintenance sort after the healthy ones.
	all := Instances(c, "web", false)
	if all[0].Maint != "" || all[1].Maint != "" || all[len(all)-1].Maint == "" {
		t.Errorf("order: %+v", all)
	}
}

func TestMaintenanceLabelAndRegistration(t *testing.T) {
	a := newTestAdapter(t, Options{HostAddr: "192.0.2.1"})
	c := inspected()
	c.Config.Labels["scuttlebutt.maintenance"] = "draining for 1.3"
	for k, v := range a.records(c) {
		r, _ := DecodeRecord(v)
		if r.Maint != "draining for 1.3" || r.Healthy() || r.Verdict(time.Now()) != VerdictMaintenance {
			t.Errorf("%s: %s", k, v)
		}
	}
	c.Config.Labels["scuttlebutt.maintenance"] = "true"
	for _, v := range a.records(c) {
		if r, _ := DecodeRecord(v); r.Maint != DefaultMaintReason {
			t.Errorf("label true: %s", v)
		}
	}

	g := Registration{Service: "api", ID: "api-1", Host: "10.0.0.2", Port: 80, Maint: "deploy"}
	if r := g.record(); r.Maint != "deploy" {
		t.Errorf("registration record %+v", r)
	}
	g.Maint = strings.Repeat("x", MaxMaintReason+1)
	if err := g.Validate(); err == nil {
		t.Error("oversized reason accepted")
	}
}

// TestMaintenanceLabelOnTheEngine: a container started with the
// maintenance label is published in maintenance, and again by the adapter
// of a restarted agent.
func TestMaintenanceLabelOnTheEngine(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	run := runAdapter(t, pub, cli, testOptions(t))
	id := startContainer(t, spec{publish: true, labels: map[string]string{
		"scuttlebutt.service":     "web",
		"scuttlebutt.maintenance": "draining for 1.3",
	}})
	key := serviceKey("web", id, 8080, "tcp")
	inMaint := func() bool {
		r, ok := pub.of(id)[key]
		return ok && r.Maint == "draining for 1.3" && !r.Healthy() && r.Verdict(time.Now()) == VerdictMaintenance
	}
	eventually(t, 10*time.Second, "the container published in maintenance", inMaint)
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "withdrawn by the stopped adapter", func() bool { _, ok := pub.of(id)[key]; return !ok })
	runAdapter(t, pub, cli, testOptions(t))
	eventually(t, 10*time.Second, "in maintenance again after the restart", inMaint)
}
