package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dnsAddr returns the address an agent process serves DNS on, from its
// "serving DNS" log line.
func (p *proc) dnsAddr() string {
	p.t.Helper()
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "serving DNS" {
			a, _ := m["dns"].(string)
			return a
		}
	}
	p.t.Fatalf("%s serves no DNS:\n%s", p.id, p.logs.String())
	return ""
}

// digCmd runs dig against addr and returns its output.
func digCmd(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// needDig skips without dig where CI does not demand it.
func needDig(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		if isCI() {
			t.Fatal("dig is not installed (Debian's dnsutils; .ci/setup installs it)")
		}
		t.Skip("dig is not installed (apt-get install dnsutils)")
	}
}

func isCI() bool { return os.Getenv("CI") == "true" }

func shortLines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// TestDNSEndToEnd: three agents, each with its DNS server; dig and Go's
// resolver read what the cluster holds from any of them.
func TestDNSEndToEnd(t *testing.T) {
	needDig(t)
	bin := binary(t)
	a1 := startAgentProc(t, bin, "dns-e2e-1", "-dns", "127.0.0.1:0")
	a2 := startAgentProc(t, bin, "dns-e2e-2", "-join", a1.addr, "-dns", "127.0.0.1:0", "-dns-ttl", "3s")
	a3 := startAgentProc(t, bin, "dns-e2e-3", "-join", a1.addr, "-dns", "127.0.0.1:0", "-dns-domain", "sd.internal")
	agents := []*proc{a1, a2, a3}
	for _, p := range agents {
		eventually(t, 15*time.Second, p.id+" sees three live nodes", func() bool {
			ns := p.nodes()
			return ns["dns-e2e-1"].Status == "alive" && ns["dns-e2e-2"].Status == "alive" && ns["dns-e2e-3"].Status == "alive"
		})
	}
	put := func(p *proc, svc, name, host string, port int, tags ...string) {
		tj, _ := json.Marshal(tags)
		rec := fmt.Sprintf(`{"v":1,"svc":%q,"name":%q,"host":%q,"port":%d,"priv":%d,"proto":"tcp","tags":%s,"health":"healthy","state":"running"}`,
			svc, name, host, port, port, tj)
		p.mustRequest("PUT", fmt.Sprintf("/v1/kv/svc/%s/%s/%d/tcp", svc, name, port), rec, 200) // the Docker adapter's key

	}
	put(a1, "web", "web-1", "127.0.0.11", 8080, "blue")
	put(a2, "web", "web-2", "127.0.0.12", 8081, "green")
	put(a2, "web", "web-3", "127.0.0.12", 8082, "blue")
	for i := range 200 {
		put(a2, "big", fmt.Sprintf("big-%d", i), fmt.Sprintf("127.1.%d.%d", i/200, i%200+1), 9000+i)
	}
	eventually(t, 15*time.Second, "dns-e2e-1 sees every instance", func() bool {
		return len(a1.instances("big")) == 200 && len(a1.instances("web")) == 3
	})

	d1 := a1.dnsAddr()
	// A, SRV (with the target's A in the additional section), RFC 2782, tags, nodes.
	if got := shortLines(digCmd(t, d1, "+short", "web.service.scuttlebutt", "A")); !slices.Equal(got, []string{"127.0.0.11", "127.0.0.12"}) {
		t.Errorf("A: %v", got)
	}
	if got := shortLines(digCmd(t, d1, "+short", "web.service.scuttlebutt", "SRV")); !slices.Equal(got, []string{
		"1 1 8080 7f00000b.addr.scuttlebutt.", "1 1 8081 7f00000c.addr.scuttlebutt.", "1 1 8082 7f00000c.addr.scuttlebutt."}) {
		t.Errorf("SRV: %v", got)
	}
	if out := digCmd(t, d1, "+noall", "+additional", "web.service.scuttlebutt", "SRV"); !strings.Contains(out, "7f00000b.addr.scuttlebutt. 0\tIN\tA\t127.0.0.11") {
		t.Errorf("SRV additional section:\n%s", out)
	}
	if got := shortLines(digCmd(t, d1, "+short", "_web._blue.service.scuttlebutt", "SRV")); !slices.Equal(got, []string{
		"1 1 8080 7f00000b.addr.scuttlebutt.", "1 1 8082 7f00000c.addr.scuttlebutt."}) {
		t.Errorf("RFC 2782 with a tag: %v", got)
	}
	if got := shortLines(digCmd(t, d1, "+short", "_web._tcp.service.scuttlebutt", "SRV")); len(got) != 3 {
		t.Errorf("RFC 2782 _tcp: %v", got)
	}
	if got := shortLines(digCmd(t, d1, "+short", "green.web.service.scuttlebutt")); !slices.Equal(got, []string{"127.0.0.12"}) {
		t.Errorf("tag: %v", got)
	}
	if got := shortLines(digCmd(t, d1, "+short", "dns-e2e-2.node.scuttlebutt")); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("node: %v", got)
	}
	// NXDOMAIN and NODATA, both with the SOA; REFUSED outside the domain.
	for _, tc := range []struct{ args, status string }{
		{"nope.service.scuttlebutt A", "NXDOMAIN"},
		{"red.web.service.scuttlebutt A", "NXDOMAIN"},
		{"nobody.node.scuttlebutt A", "NXDOMAIN"},
		{"web.service.scuttlebutt AAAA", "NOERROR"},
		{"web.service.scuttlebutt TXT", "NOERROR"},
	} {
		out := digCmd(t, d1, strings.Fields(tc.args)...)
		if !strings.Contains(out, "status: "+tc.status) || !strings.Contains(out, "ANSWER: 0") ||
			!strings.Contains(out, "AUTHORITY: 1") || !strings.Contains(out, "IN\tSOA\tns.scuttlebutt. hostmaster.scuttlebutt.") {
			t.Errorf("%s: want %s with the SOA:\n%s", tc.args, tc.status, out)
		}
	}
	for _, name := range []string{"example.com", "scuttlebutt.example.com", "."} {
		if out := digCmd(t, d1, name, "A"); !strings.Contains(out, "status: REFUSED") || strings.Contains(out, " ra") {
			t.Errorf("%s: want REFUSED without recursion:\n%s", name, out)
		}
	}
	// Another domain and TTL on the other agents.
	if got := shortLines(digCmd(t, a3.dnsAddr(), "+short", "web.service.sd.internal")); len(got) != 2 {
		t.Errorf("-dns-domain sd.internal: %v", got)
	}
	if out := digCmd(t, a2.dnsAddr(), "+noall", "+answer", "blue.web.service.scuttlebutt"); !strings.Contains(out, " 3\tIN\tA\t") {
		t.Errorf("-dns-ttl 3s:\n%s", out)
	}

	// 200 instances: over UDP a truncated answer with TC; dig retries over
	// TCP and gets all of them.
	out := digCmd(t, d1, "+ignore", "+notcp", "+bufsize=1232", "big.service.scuttlebutt", "SRV")
	if !strings.Contains(out, "flags: qr aa tc") || !strings.Contains(out, "MSG SIZE  rcvd:") {
		t.Errorf("UDP answer of 200 instances is not truncated:\n%s", out)
	}
	if n := msgSize(out); n == 0 || n > 1232 {
		t.Errorf("UDP answer of %d bytes, over the 1232-byte EDNS0 buffer", n)
	}
	if out := digCmd(t, d1, "+noedns", "+ignore", "+notcp", "big.service.scuttlebutt", "A"); msgSize(out) > 512 || !strings.Contains(out, " tc") {
		t.Errorf("UDP answer without EDNS0 over 512 bytes or not truncated:\n%s", out)
	}
	if got := shortLines(digCmd(t, d1, "+short", "big.service.scuttlebutt", "SRV")); len(got) != 200 {
		t.Errorf("after the retry over TCP: %d answers, want 200", len(got))
	}
	if got := shortLines(digCmd(t, d1, "+short", "+tcp", "big.service.scuttlebutt", "A")); len(got) != 200 {
		t.Errorf("over TCP: %d answers, want 200", len(got))
	}

	// Go's resolver, dialing the agent's port (UDP, then TCP on truncation).
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dd net.Dialer
		return dd.DialContext(ctx, network, d1)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if hosts, err := res.LookupHost(ctx, "web.service.scuttlebutt."); err != nil || !slices.Equal(slices.Sorted(slices.Values(hosts)), []string{"127.0.0.11", "127.0.0.12"}) {
		t.Errorf("LookupHost: %v %v", hosts, err)
	}
	if _, srvs, err := res.LookupSRV(ctx, "web", "blue", "service.scuttlebutt."); err != nil || len(srvs) != 2 {
		t.Errorf("LookupSRV _web._blue: %v %v", srvs, err)
	} else if addrs, err := res.LookupHost(ctx, srvs[0].Target); err != nil || len(addrs) != 1 {
		t.Errorf("the SRV target %s does not resolve: %v %v", srvs[0].Target, addrs, err)
	}
	if _, srvs, err := res.LookupSRV(ctx, "big", "tcp", "service.scuttlebutt."); err != nil || len(srvs) != 200 {
		t.Errorf("LookupSRV of 200 instances: %d %v", len(srvs), err)
	}
	if ips, err := res.LookupIP(ctx, "ip4", "big.service.scuttlebutt."); err != nil || len(ips) != 200 {
		t.Errorf("LookupIP of 200 instances: %d %v", len(ips), err)
	}
	var dnsErr *net.DNSError
	if _, err := res.LookupHost(ctx, "nope.service.scuttlebutt."); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost of an unknown service: %v", err)
	}

	// A watched instance whose check fails leaves the answers of every
	// node within the check's fall time plus the spread, and comes back.
	svc := &flakyService{}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	const (
		interval = 200 * time.Millisecond
		timeout  = 150 * time.Millisecond
		fall     = 2
		spread   = 2 * time.Second // as in TestWatchVerdictsOnEveryNode
	)
	bound := interval*(fall+1) + timeout + spread
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	startBg(t, []string{"SCUTTLEBUTT_ADDR=" + a2.base}, bin, "watch", "-label", "es", "-service-id", "es-1",
		"-monitor-url", srv.URL+"/health", "-host-ip", "127.0.0.21", "-port", port, "-interval", interval.String(),
		"-timeout", timeout.String(), "-fall", strconv.Itoa(fall), "-ttl", "3s")
	lookup := func(p *proc, domain string) []string {
		host, port, _ := net.SplitHostPort(p.dnsAddr())
		out, _ := exec.Command("dig", "@"+host, "-p", port, "+time=1", "+tries=1", "+short", "es.service."+domain).Output()
		return shortLines(string(out))
	}
	domains := map[*proc]string{a1: "scuttlebutt", a2: "scuttlebutt", a3: "sd.internal"}
	for _, p := range agents {
		eventually(t, 15*time.Second, p.id+" answers es", func() bool { return slices.Equal(lookup(p, domains[p]), []string{"127.0.0.21"}) })
	}
	svc.mode.Store(serve500)
	start := time.Now()
	for _, p := range agents {
		eventually(t, bound, p.id+" drops the failing instance from its DNS answers", func() bool { return len(lookup(p, domains[p])) == 0 })
	}
	t.Logf("a failing check left the DNS answers of every node after %v (bound %v)", time.Since(start), bound)
	svc.mode.Store(serveOK)
	for _, p := range agents {
		eventually(t, bound, p.id+" answers the recovered instance", func() bool { return len(lookup(p, domains[p])) == 1 })
	}

	// The metrics count the queries.
	metrics := a1.mustRequest("GET", "/metrics", "", 200)
	for _, want := range []string{`scuttlebutt_dns_queries_total{rcode="NXDOMAIN",type="A"}`, `scuttlebutt_dns_queries_total{rcode="REFUSED",type="A"}`,
		`scuttlebutt_dns_queries_total{rcode="NOERROR",type="SRV"}`, "scuttlebutt_dns_answer_duration_seconds_count"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// An address given explicitly that cannot be bound stops the agent at start.
	cmd := exec.Command(bin, "agent", "-bind", "127.0.0.1:0", "-http", "", "-dns", d1)
	out2, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != exitError || !strings.Contains(string(out2), "cannot serve DNS on "+d1) {
		t.Errorf("-dns %s taken: exit %d\n%s", d1, cmd.ProcessState.ExitCode(), out2)
	}
}

// msgSize reads dig's ";; MSG SIZE  rcvd: N".
func msgSize(out string) int {
	_, after, ok := strings.Cut(out, "MSG SIZE  rcvd: ")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.Fields(after)[0])
	return n
}
