package docker

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// The check labels, read against the published addresses; bad ones are
// errors naming the label.
func TestParseCheck(t *testing.T) {
	ports := []portAddr{
		{private: network.MustParsePort("53/udp"), host: "10.0.0.1", port: 5353},
		{private: network.MustParsePort("8080/tcp"), host: "10.0.0.1", port: 32768},
		{private: network.MustParsePort("9000/tcp"), host: "10.0.0.2", port: 32769},
	}
	l := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m["scuttlebutt.check."+kv[i]] = kv[i+1]
		}
		return m
	}
	s, err := parseCheck(l("http", "/health"), "scuttlebutt", ports)
	if err != nil {
		t.Fatal(err)
	}
	if s.kind != "http" || s.target != "http://10.0.0.1:32768/health" || s.cfg.Interval != 5*time.Second ||
		s.cfg.Timeout != 5*time.Second || s.cfg.Rise != DefaultRise || s.cfg.Fall != DefaultFall || s.ttl != DefaultTTL {
		t.Errorf("defaults: %+v", s)
	}
	s, err = parseCheck(l("tcp", "true", "port", "9000", "interval", "200ms", "timeout", "100ms", "rise", "2", "fall", "3", "ttl", "5s"), "scuttlebutt", ports)
	if err != nil {
		t.Fatal(err)
	}
	if s.kind != "tcp" || s.target != "10.0.0.2:32769" || s.cfg.Interval != 200*time.Millisecond ||
		s.cfg.Timeout != 100*time.Millisecond || s.cfg.Rise != 2 || s.cfg.Fall != 3 || s.ttl != 5*time.Second {
		t.Errorf("all labels: %+v", s)
	}
	if _, ok := s.checker().(health.TCP); !ok {
		t.Errorf("tcp checker %T", s.checker())
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{l("interval", "5s"), "check.http or"},
		{l("http", "health"), "check.http=\"health\""},
		{l("http", "/h", "tcp", "true"), "give one of them"},
		{l("tcp", "yes"), "check.tcp"},
		{l("http", "/h", "interval", "soon"), "check.interval"},
		{l("http", "/h", "interval", "-1s"), "check.interval"},
		{l("http", "/h", "rise", "0"), "check.rise"},
		{l("http", "/h", "fall", "x"), "check.fall"},
		{l("http", "/h", "interval", "1s", "timeout", "2s"), "timeout"},
		{l("http", "/h", "port", "53"), "check.port"},
		{l("http", "/h", "interval", "1s", "ttl", "1500ms"), "check.ttl"},
	} {
		if _, err := parseCheck(tc.labels, "scuttlebutt", ports); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.labels, err, tc.want)
		}
	}
	if _, err := parseCheck(l("http", "/h"), "scuttlebutt", ports[:1]); err == nil || !strings.Contains(err.Error(), "no published TCP port") {
		t.Errorf("no TCP port: %v", err)
	}
}

// Records of a container with check labels carry the verdict (starting
// until a check ran) and a TTL; bad labels make them failing, saying why.
func TestRecordsWithCheckLabels(t *testing.T) {
	a := newTestAdapter(t, Options{HostAddr: "192.0.2.1"})
	c := inspected()
	c.Config.Labels["scuttlebutt.check.http"] = "/health"
	got := a.records(c)
	r, err := DecodeRecord(got["svc/web-8080/0123456789ab/8080/tcp"])
	if err != nil {
		t.Fatal(err)
	}
	if r.Check == nil || r.Check.Status != "starting" || r.Health != HealthStarting || r.Expires <= time.Now().UnixMilli() {
		t.Errorf("record %+v", r)
	}
	if a.checks["0123456789ab"].spec.target != "http://192.0.2.1:32768/health" {
		t.Errorf("check %+v", a.checks["0123456789ab"].spec)
	}
	c.Config.Labels["scuttlebutt.check.interval"] = "never"
	r, _ = DecodeRecord(a.records(c)["svc/web-8080/0123456789ab/8080/tcp"])
	if r.Check == nil || r.Check.Status != "failing" || !strings.Contains(r.Check.Output, "check.interval") || r.Expires != 0 || r.Healthy() {
		t.Errorf("bad labels: %+v %+v", r, r.Check)
	}
	c.State.Running = false
	if len(a.records(c)) != 0 || len(a.checks) != 0 {
		t.Errorf("a stopped container keeps records or a check")
	}
}

// On the real engine: a container with check labels goes passing, failing
// on 500, failing by timeouts when its health endpoint hangs, and passing
// again; its records follow, and its check stops with it.
func TestCheckLabelsOnTheEngine(t *testing.T) {
	cli := engine(t)
	pub := newMemPub(nil)
	opts := testOptions(t)
	var mu sync.Mutex
	var results []health.Result
	opts.OnCheck = func(cid string, res health.Result) {
		mu.Lock()
		results = append(results, res)
		mu.Unlock()
	}
	run := runAdapter(t, pub, cli, opts)

	id := startContainer(t, spec{publish: true, health: &container.HealthConfig{Test: []string{"NONE"}}, labels: map[string]string{
		"scuttlebutt.service":        "web",
		"scuttlebutt.check.http":     "/health",
		"scuttlebutt.check.interval": "200ms",
		"scuttlebutt.check.timeout":  "150ms",
		"scuttlebutt.check.fall":     "2",
	}})
	check := func() (Record, *Check) {
		r, _ := pub.record(id)
		return r, r.Check
	}
	status := func(want string, output string) func() bool {
		return func() bool {
			r, c := check()
			return c != nil && c.Status == want && strings.Contains(c.Output, output) && r.Expires > time.Now().UnixMilli()
		}
	}
	eventually(t, 15*time.Second, "passing", status("passing", "200 OK"))
	if r, _ := check(); !r.Healthy() || r.Health != HealthHealthy || r.Check.At == 0 {
		t.Errorf("passing record %+v", r)
	}
	post(t, id, "/sick")
	eventually(t, 10*time.Second, "failing on 500", status("failing", "HTTP 500"))
	if r, _ := check(); r.Healthy() || r.Health != HealthUnhealthy {
		t.Errorf("failing record counts as healthy: %+v", r)
	}
	post(t, id, "/well")
	eventually(t, 10*time.Second, "passing again", status("passing", ""))
	post(t, id, "/hang")
	eventually(t, 10*time.Second, "failing by timeouts", status("failing", "timed out after 150ms"))
	post(t, id, "/well")
	eventually(t, 10*time.Second, "passing after the hang", status("passing", ""))

	mu.Lock()
	var ok, failed, timedOut int
	for _, r := range results {
		switch {
		case r.OK:
			ok++
		case r.TimedOut:
			timedOut++
		default:
			failed++
		}
	}
	mu.Unlock()
	if ok == 0 || failed < 2 || timedOut < 2 {
		t.Errorf("OnCheck saw %d passed, %d failed, %d timed out checks", ok, failed, timedOut)
	}

	ctx := t.Context()
	if _, err := cli.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "records withdrawn", func() bool { return len(pub.of(id)) == 0 })
	n := pub.Writes()
	awaitReconcileNow(t, run.a)
	time.Sleep(time.Second) // several check intervals: a check left running would write
	if pub.Writes() != n {
		t.Errorf("%d writes after the container stopped", pub.Writes()-n)
	}
}
