package docker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// These tests need no Docker engine.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// A record of an older writer (no check, no TTL) reads as before; a check
// and a TTL decide the rest.
func TestHealthyAtWithCheckAndTTL(t *testing.T) {
	old := `{"v":1,"svc":"web","cid":"0123456789ab","name":"w","img":"i","host":"10.0.0.1","port":80,"priv":80,"proto":"tcp","health":"healthy","state":"running","started":1}`
	r, err := DecodeRecord(old)
	if err != nil {
		t.Fatal(err)
	}
	if !r.HealthyAt(t0) || r.Check != nil || r.Expires != 0 || r.Verdict(t0) != "healthy" || r.ExpiredAt(t0.Add(1000*time.Hour)) {
		t.Fatalf("old record: healthy %v check %v exp %d verdict %s", r.HealthyAt(t0), r.Check, r.Expires, r.Verdict(t0))
	}
	exp := t0.Add(time.Minute).UnixMilli()
	for _, tc := range []struct {
		name    string
		health  string
		check   string
		exp     int64
		at      time.Time
		healthy bool
		verdict string
		rank    int
	}{
		{"passing", HealthHealthy, "passing", exp, t0, true, "passing", 0},
		{"passing, Docker check unhealthy", HealthUnhealthy, "passing", exp, t0, false, "passing", 3},
		{"failing", HealthUnhealthy, "failing", exp, t0, false, "failing", 3},
		{"starting", HealthStarting, "starting", exp, t0, false, "starting", 2},
		{"marked expired by its publisher", HealthUnhealthy, CheckExpired, exp, t0, false, "expired", 3},
		{"passing, exp past by the reader's clock", HealthHealthy, "passing", exp, t0.Add(time.Minute), true, "passing", 0},
		{"passing, no TTL", HealthHealthy, "passing", 0, t0.Add(1000 * time.Hour), true, "passing", 0},
		{"no check, exp past by the reader's clock", HealthNone, "", exp, t0.Add(2 * time.Minute), true, "none", 1},
		{"no check, TTL left", HealthNone, "", exp, t0, true, "none", 1},
	} {
		r := Record{V: 1, Health: tc.health, State: StateRunning, Expires: tc.exp}
		if tc.check != "" {
			r.Check = &Check{Status: tc.check}
		}
		if got := r.HealthyAt(tc.at); got != tc.healthy {
			t.Errorf("%s: HealthyAt = %v", tc.name, got)
		}
		if got := r.Verdict(tc.at); got != tc.verdict {
			t.Errorf("%s: Verdict = %q, want %q", tc.name, got, tc.verdict)
		}
		if got := r.rank(tc.at); got != tc.rank {
			t.Errorf("%s: rank = %d, want %d", tc.name, got, tc.rank)
		}
		r.State = StatePaused
		if r.HealthyAt(tc.at) || r.rank(tc.at) != tc.rank+4 {
			t.Errorf("%s: paused counts as healthy or ranks %d", tc.name, r.rank(tc.at))
		}
	}
}

func TestCombineHealth(t *testing.T) {
	for _, tc := range []struct {
		docker string
		check  health.Status
		want   string
	}{
		{HealthNone, health.Passing, HealthHealthy},
		{HealthNone, health.Failing, HealthUnhealthy},
		{HealthNone, health.Starting, HealthStarting},
		{HealthHealthy, health.Failing, HealthUnhealthy},
		{HealthUnhealthy, health.Passing, HealthUnhealthy},
		{HealthStarting, health.Passing, HealthStarting},
		{HealthHealthy, health.Passing, HealthHealthy},
	} {
		if got := CombineHealth(tc.docker, tc.check); got != tc.want {
			t.Errorf("CombineHealth(%s, %s) = %s, want %s", tc.docker, tc.check, got, tc.want)
		}
	}
}

// Queries of a cluster mixing old records, checked ones and expired ones:
// every reader agrees through HealthyAt.
func TestServicesWithChecks(t *testing.T) {
	now := time.Now()
	put := func(st map[string]string, key string, r Record) { st[key] = encodeRecord(r) }
	a := map[string]string{}
	base := Record{V: 1, Service: "es", Host: "10.0.0.1", Proto: "tcp", State: StateRunning}
	r := base
	r.Port, r.Health = 1, HealthHealthy // an old writer's
	put(a, "svc/es/0123456789a1/80/tcp", r)
	r = base
	r.Port, r.Health, r.Check, r.Expires = 2, HealthUnhealthy, &Check{Status: "failing", Output: "HTTP 500"}, now.Add(time.Minute).UnixMilli()
	put(a, "svc/es/es-2", r)
	r = base
	r.Port, r.Health, r.Check, r.Expires = 3, HealthUnhealthy, &Check{Status: CheckExpired}, now.Add(-time.Second).UnixMilli()
	put(a, "svc/es/es-3", r) // marked expired by its publisher
	r = base
	r.Port, r.Health, r.Check, r.Expires = 5, HealthHealthy, &Check{Status: "passing"}, now.Add(-time.Hour).UnixMilli()
	put(a, "svc/es/es-5", r) // by a publisher whose clock is an hour behind: not expired
	r = base
	r.Port, r.Health, r.Check, r.Expires = 4, HealthHealthy, &Check{Status: "passing"}, now.Add(time.Minute).UnixMilli()
	put(a, "svc/es/es-4", r)
	c := fakeCluster{
		nodes:  []scuttlebutt.NodeInfo{{ID: "a", Status: scuttlebutt.StatusAlive}},
		states: map[string]map[string]string{"a": a},
	}
	var ports []int
	for _, in := range Instances(c, "es", false) {
		ports = append(ports, in.Port)
	}
	if want := []int{1, 4, 5, 2, 3}; !equalInts(ports, want) {
		t.Errorf("order %v, want %v (healthy, passing, then failing and expired by key)", ports, want)
	}
	ports = nil
	for _, in := range Instances(c, "es", true) {
		ports = append(ports, in.Port)
	}
	if want := []int{1, 4, 5}; !equalInts(ports, want) {
		t.Errorf("healthy %v, want %v", ports, want)
	}
}

func TestRegistrationValidate(t *testing.T) {
	good := Registration{Service: "es", ID: "es-1", Host: "10.0.0.7", Port: 9200, Info: json.RawMessage(`{"a": 1}`)}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if good.Key() != "svc/es/es-1" || !IsRegistrationKey(good.Key()) || IsRegistrationKey("svc/es/0123456789ab/80/tcp") {
		t.Errorf("key %q", good.Key())
	}
	if _, ok := keyContainer(good.Key()); ok {
		t.Error("the adapter would take a registration's key for its own")
	}
	for name, mod := range map[string]func(*Registration){
		"empty service":  func(g *Registration) { g.Service = "" },
		"slash in ID":    func(g *Registration) { g.ID = "a/b" },
		"space in name":  func(g *Registration) { g.Service = "a b" },
		"long ID":        func(g *Registration) { g.ID = strings.Repeat("x", 65) },
		"too long a key": func(g *Registration) { g.Service, g.ID = strings.Repeat("s", 64), strings.Repeat("i", 64) },
		"no host":        func(g *Registration) { g.Host = "" },
		"bad port":       func(g *Registration) { g.Port = 70000 },
		"bad proto":      func(g *Registration) { g.Proto = "icmp" },
		"bad info":       func(g *Registration) { g.Info = json.RawMessage(`{"a":`) },
	} {
		g := good
		mod(&g)
		if err := g.Validate(); !errors.Is(err, ErrRegistration) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}

// The rule of writes: at once on a change of verdict, every third of the
// TTL otherwise, never in between; the record carries the verdict, the
// time of the check, the output and the expiry.
func TestPublicationWrites(t *testing.T) {
	pub := newMemPub(nil)
	now := t0
	p, err := NewPublication(pub, Registration{Service: "es", ID: "es-1", Host: "10.0.0.7", Port: 9200,
		Info: json.RawMessage(`{ "http_port": 9200 }`)}, PublishOptions{TTL: 30 * time.Second, Now: func() time.Time { return now }, elapsed: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	result := func(s health.Status, out string) health.Result {
		return health.Result{Status: s, LastCheck: now, Output: out}
	}
	steps := []struct {
		after  time.Duration
		status health.Status
		write  bool
	}{
		{0, health.Starting, true},            // registered
		{time.Second, health.Starting, false}, // nothing new
		{time.Second, health.Passing, true},   // verdict
		{5 * time.Second, health.Passing, false},
		{5 * time.Second, health.Passing, true}, // 11 s since the write: past a third of 30 s
		{time.Second, health.Failing, true},
		{time.Second, health.Failing, false},
	}
	for i, st := range steps {
		now = now.Add(st.after)
		wrote, r, err := p.Report(result(st.status, "out "+string(st.status)))
		if err != nil {
			t.Fatal(err)
		}
		if wrote != st.write {
			t.Fatalf("step %d (%s): wrote %v, want %v", i, st.status, wrote, st.write)
		}
		if r.Check == nil || r.Check.Status != string(st.status) {
			t.Fatalf("step %d: record %+v", i, r)
		}
		if wrote && (r.Expires != now.Add(30*time.Second).UnixMilli() || r.Check.At != now.UnixMilli()) {
			t.Fatalf("step %d: expires %d at %d", i, r.Expires, r.Check.At)
		}
	}
	v, _ := pub.Lookup("svc/es/es-1")
	r, err := DecodeRecord(v)
	if err != nil {
		t.Fatal(err)
	}
	if r.Health != HealthUnhealthy || r.Name != "es-1" || r.Container != "" || r.Addr() != "10.0.0.7:9200" ||
		string(r.Info) != `{"http_port":9200}` || r.Check.Output != "out failing" {
		t.Errorf("published %s", v)
	}
	if err := p.Withdraw(); err != nil {
		t.Fatal(err)
	}
	if _, ok := pub.Lookup("svc/es/es-1"); ok {
		t.Error("Withdraw left the record")
	}
}

// A long output is trimmed to fit the value limit; info that cannot fit is
// an error, and nothing is written.
func TestPublicationFitsTheLimit(t *testing.T) {
	pub := newMemPub(nil)
	p, err := NewPublication(pub, Registration{Service: "es", ID: "es-1", Host: "10.0.0.7", Tags: []string{"a"}}, PublishOptions{MaxValueSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Repeat("\x01é", 200) // escapes make the JSON longer than the text
	if _, r, err := p.Report(health.Result{Status: health.Failing, LastCheck: t0, Output: out}); err != nil || r.Check.Output == "" || len(r.Tags) != 1 {
		t.Fatalf("Report: %v, %+v", err, r)
	}
	v, _ := pub.Lookup("svc/es/es-1")
	if len(v) > 300 {
		t.Errorf("record of %d bytes over a limit of 300", len(v))
	}
	big, err := NewPublication(pub, Registration{Service: "es", ID: "es-2", Host: "h", Info: json.RawMessage(`"` + strings.Repeat("x", 400) + `"`)}, PublishOptions{MaxValueSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := big.Report(health.Result{}); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Report of a record too large: %v", err)
	}
	if _, ok := pub.Lookup("svc/es/es-2"); ok {
		t.Error("a record too large was written")
	}
	if _, err := NewPublication(pub, Registration{Service: "es", ID: "x", Host: "h"}, PublishOptions{TTL: time.Millisecond}); !errors.Is(err, ErrRegistration) {
		t.Errorf("TTL under MinTTL: %v", err)
	}
}
