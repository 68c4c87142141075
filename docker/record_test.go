package docker

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/scuttlebutt-go/scuttlebutt"
)

// These tests need no Docker engine.

func TestRecordRoundTrip(t *testing.T) {
	r := Record{V: 1, Service: "web", Container: "0123456789ab", Name: "web-1", Image: "acme/web:1",
		Host: "10.0.0.7", Port: 32768, Private: 8080, Proto: "tcp", Tags: []string{"a"},
		Labels: map[string]string{"team": "blue"}, Health: HealthHealthy, State: StateRunning, Started: 1}
	v := encodeRecord(r)
	if !strings.HasPrefix(v, `{"v":1,`) {
		t.Errorf("encoded %s", v)
	}
	got, err := DecodeRecord(v)
	if err != nil {
		t.Fatal(err)
	}
	if encodeRecord(got) != v {
		t.Errorf("round trip: %s != %s", encodeRecord(got), v)
	}
	if got.Addr() != "10.0.0.7:32768" || !got.Healthy() {
		t.Errorf("Addr %s Healthy %v", got.Addr(), got.Healthy())
	}
	if _, err := DecodeRecord(`{"v":2}`); !errors.Is(err, ErrRecordVersion) {
		t.Errorf("version 2: %v", err)
	}
	if _, err := DecodeRecord(`nope`); err == nil {
		t.Error("garbage decoded")
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"web":                                  "web",
		"web:1.2":                              "web",
		"acme/web:1.2":                         "web",
		"registry:5000/team/web:1.2":           "web",
		"registry:5000/team/web@sha256:abcdef": "web",
		"sha256:0123":                          "sha256",
	} {
		if got := imageName(in); got != want {
			t.Errorf("imageName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sanitize("a b/c:d"); got != "a-b-c-d" {
		t.Errorf("sanitize: %q", got)
	}
	if got := sanitize(strings.Repeat("x", 100)); len(got) != 64 {
		t.Errorf("sanitize kept %d bytes", len(got))
	}
	k := serviceKey(strings.Repeat("x", 64), strings.Repeat("f", 64), 65535, "sctp")
	if len(k) > scuttlebutt.MaxKeySize {
		t.Errorf("longest key %d bytes > %d", len(k), scuttlebutt.MaxKeySize)
	}
	if cid, ok := keyContainer("svc/web/0123456789ab/8080/tcp"); !ok || cid != "0123456789ab" {
		t.Errorf("keyContainer: %q %v", cid, ok)
	}
	for _, k := range []string{"other/web/0123456789ab/8080/tcp", "svc/web/x", "svc/a/b/c/d/e"} {
		if _, ok := keyContainer(k); ok {
			t.Errorf("keyContainer accepted %q", k)
		}
	}
}

func inspected() container.InspectResponse {
	return container.InspectResponse{
		ID:    "0123456789abcdef0123456789abcdef",
		Name:  "/web-1",
		State: &container.State{Running: true, StartedAt: "2026-01-01T00:00:00.5Z", Health: &container.Health{Status: "healthy"}},
		Config: &container.Config{
			Image:  "acme/web:1.2",
			Labels: map[string]string{"scuttlebutt.tags": "a,b", "scuttlebutt.export": "team", "team": "blue"},
		},
		NetworkSettings: &container.NetworkSettings{
			Ports: network.PortMap{
				network.MustParsePort("8080/tcp"): {{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: "32768"}, {HostIP: netip.MustParseAddr("::"), HostPort: "32768"}},
				network.MustParsePort("53/udp"):   {{HostIP: netip.MustParseAddr("10.1.2.3"), HostPort: "5353"}},
				network.MustParsePort("9000/tcp"): nil, // exposed, not published
			},
			Networks: map[string]*network.EndpointSettings{
				"zeta":   {IPAddress: netip.MustParseAddr("10.9.0.2")},
				"bridge": {IPAddress: netip.MustParseAddr("172.17.0.2")},
			},
		},
	}
}

func newTestAdapter(t *testing.T, opts Options) *Adapter {
	t.Helper()
	a, err := New(newMemPub(nil), nopClient(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRecordsOfContainer(t *testing.T) {
	a := newTestAdapter(t, Options{HostAddr: "192.0.2.1"})
	got := a.records(inspected())
	want := map[string]string{
		"svc/web-53/0123456789ab/53/udp":     `{"v":1,"svc":"web-53","cid":"0123456789ab","name":"web-1","img":"acme/web:1.2","host":"10.1.2.3","port":5353,"priv":53,"proto":"udp","tags":["a","b"],"labels":{"team":"blue"},"health":"healthy","state":"running","started":1767225600}`,
		"svc/web-8080/0123456789ab/8080/tcp": `{"v":1,"svc":"web-8080","cid":"0123456789ab","name":"web-1","img":"acme/web:1.2","host":"192.0.2.1","port":32768,"priv":8080,"proto":"tcp","tags":["a","b"],"labels":{"team":"blue"},"health":"healthy","state":"running","started":1767225600}`,
	}
	if len(got) != len(want) {
		t.Fatalf("records %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s:\n got %s\nwant %s", k, got[k], v)
		}
	}

	c := inspected()
	c.Config.Labels["scuttlebutt.port.8080.name"] = "api"
	c.Config.Labels["scuttlebutt.service"] = "dns"
	c.State.Health = nil
	got = a.records(c)
	r, _ := DecodeRecord(got["svc/api/0123456789ab/8080/tcp"])
	r2, _ := DecodeRecord(got["svc/dns-53/0123456789ab/53/udp"])
	if r.Service != "api" || r.Health != HealthNone || r2.Service != "dns-53" {
		t.Errorf("per-port names: %v", got)
	}

	// not running, restarting, ignored, explicit without opt-in: nothing
	for name, mut := range map[string]func(*container.InspectResponse){
		"stopped":    func(c *container.InspectResponse) { c.State.Running = false },
		"restarting": func(c *container.InspectResponse) { c.State.Restarting = true },
		"ignored":    func(c *container.InspectResponse) { c.Config.Labels["scuttlebutt.ignore"] = "true" },
	} {
		c := inspected()
		mut(&c)
		if got := a.records(c); len(got) != 0 {
			t.Errorf("%s: %v", name, got)
		}
	}
	if got := newTestAdapter(t, Options{Explicit: true}).records(inspected()); len(got) != 0 {
		t.Errorf("explicit, no opt-in: %v", got)
	}
	if got := newTestAdapter(t, Options{RequireLabel: "team=red"}).records(inspected()); len(got) != 0 {
		t.Errorf("required label missing: %v", got)
	}
	if got := newTestAdapter(t, Options{RequireLabel: "team"}).records(inspected()); len(got) != 2 {
		t.Errorf("required label present: %v", got)
	}

	// paused
	c = inspected()
	c.State.Paused = true
	for _, v := range a.records(c) {
		if r, _ := DecodeRecord(v); r.State != StatePaused || r.Healthy() {
			t.Errorf("paused: %s", v)
		}
	}
}

func TestRecordsContainerAddr(t *testing.T) {
	a := newTestAdapter(t, Options{UseContainerAddr: true})
	got := a.records(inspected())
	if len(got) != 3 {
		t.Fatalf("records %v", got)
	}
	r, _ := DecodeRecord(got["svc/web-9000/0123456789ab/9000/tcp"])
	if r.Host != "172.17.0.2" || r.Port != 9000 {
		t.Errorf("container address: %s", r.Addr())
	}
	a = newTestAdapter(t, Options{UseContainerAddr: true, Network: "zeta"})
	r, _ = DecodeRecord(a.records(inspected())["svc/web-8080/0123456789ab/8080/tcp"])
	if r.Addr() != "10.9.0.2:8080" {
		t.Errorf("named network: %s", r.Addr())
	}
}

func TestRecordSizeLimit(t *testing.T) {
	c := inspected()
	c.Config.Labels["scuttlebutt.export"] = "big"
	c.Config.Labels["big"] = strings.Repeat("x", 900)
	a := newTestAdapter(t, Options{})
	for k, v := range a.records(c) {
		r, _ := DecodeRecord(v)
		if len(v) > 888 || r.Labels != nil || len(r.Tags) != 2 {
			t.Errorf("%s: %d bytes, labels %v", k, len(v), r.Labels)
		}
	}
}

func TestEventContainer(t *testing.T) {
	for _, tc := range []struct {
		m    events.Message
		want string
	}{
		{events.Message{Type: events.ContainerEventType, Action: events.ActionDie, Actor: events.Actor{ID: "c1"}}, "c1"},
		{events.Message{Type: events.ContainerEventType, Action: "health_status: healthy", Actor: events.Actor{ID: "c2"}}, "c2"},
		{events.Message{Type: events.ContainerEventType, Action: "exec_start: /app health", Actor: events.Actor{ID: "c3"}}, ""},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionAttach, Actor: events.Actor{ID: "c3"}}, ""},
		{events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Actor: events.Actor{ID: "n1", Attributes: map[string]string{"container": "c4"}}}, "c4"},
		{events.Message{Type: events.ImageEventType, Action: events.ActionDelete, Actor: events.Actor{ID: "i1"}}, ""},
	} {
		if got := eventContainer(tc.m); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.m.Type, tc.m.Action, got, tc.want)
		}
	}
}

// fakeCluster is a Cluster of fixed nodes and states.
type fakeCluster struct {
	nodes  []scuttlebutt.NodeInfo
	states map[string]map[string]string
}

func (c fakeCluster) Nodes() []scuttlebutt.NodeInfo { return c.nodes }
func (c fakeCluster) State(id string) (map[string]string, bool) {
	s, ok := c.states[id]
	return s, ok
}

func rec(svc, cid, health, state string, port int) (string, string) {
	r := Record{V: 1, Service: svc, Container: cid, Host: "10.0.0.1", Port: port, Private: 80, Proto: "tcp", Health: health, State: state}
	return serviceKey(svc, cid, 80, "tcp"), encodeRecord(r)
}

func TestServicesAndInstances(t *testing.T) {
	states := map[string]map[string]string{}
	put := func(node, svc, cid, health, state string, port int) {
		if states[node] == nil {
			states[node] = map[string]string{"other": "x", "svc/bad/0123456789ab/1/tcp": "{"}
		}
		k, v := rec(svc, cid, health, state, port)
		states[node][k] = v
	}
	put("a", "web", "aaaaaaaaaaa1", HealthUnhealthy, StateRunning, 1)
	put("a", "web", "aaaaaaaaaaa2", HealthNone, StateRunning, 2)
	put("b", "web", "bbbbbbbbbbb1", HealthHealthy, StateRunning, 3)
	put("b", "web", "bbbbbbbbbbb2", HealthHealthy, StateUnknown, 4)
	put("b", "web", "bbbbbbbbbbb3", HealthStarting, StateRunning, 5)
	put("b", "db", "bbbbbbbbbbb4", HealthHealthy, StateRunning, 6)
	put("dead", "web", "ddddddddddd1", HealthHealthy, StateRunning, 7)
	put("left", "web", "eeeeeeeeeee1", HealthHealthy, StateRunning, 8)
	c := fakeCluster{
		nodes: []scuttlebutt.NodeInfo{
			{ID: "a", Addr: "10.0.0.1:7946", Status: scuttlebutt.StatusAlive},
			{ID: "b", Addr: "10.0.0.2:7946", Status: scuttlebutt.StatusAlive},
			{ID: "dead", Status: scuttlebutt.StatusDead},
			{ID: "left", Status: scuttlebutt.StatusLeft},
		},
		states: states,
	}
	all := Services(c)
	if len(all) != 2 || len(all["db"]) != 1 {
		t.Fatalf("services %v", all)
	}
	var ports []int
	for _, in := range Instances(c, "web", false) {
		ports = append(ports, in.Port)
	}
	if got, want := ports, []int{3, 2, 5, 1, 4}; !equalInts(got, want) {
		t.Errorf("order %v, want %v (healthy, none, starting, unhealthy, not running)", got, want)
	}
	ports = nil
	for _, in := range Instances(c, "web", true) {
		ports = append(ports, in.Port)
	}
	if got, want := ports, []int{3, 2}; !equalInts(got, want) {
		t.Errorf("healthy %v, want %v", got, want)
	}
	if in := Instances(c, "db", true); len(in) != 1 || in[0].Node != "b" || in[0].NodeAddr != "10.0.0.2:7946" {
		t.Errorf("db %+v", in)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
