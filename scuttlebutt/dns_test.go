package main

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// putInstance publishes a record on node of the fake cluster.
func (ts *testServer) putInstance(node string, r docker.Record) {
	if r.V == 0 {
		r.V = docker.RecordVersion
	}
	if r.State == "" {
		r.State = docker.StateRunning
	}
	if r.Health == "" {
		r.Health = docker.HealthHealthy
	}
	if r.Proto == "" {
		r.Proto = "tcp"
	}
	b, _ := json.Marshal(r)
	key := docker.KeyPrefix + r.Service + "/" + r.Name
	ts.node.set(node, key, string(b))
	ts.hub.publish(event{Type: "update", Node: node, Key: key})
}

// newTestDNS starts a DNS server on a free loopback port for ts.
func newTestDNS(t *testing.T, ts *testServer, ttl time.Duration) *dnsServer {
	t.Helper()
	f := dnsFlags{addr: dnsAddrFlag{addr: "127.0.0.1:0", explicit: true}, domain: "Sd.Test.", ttl: ttl}
	if err := f.check(); err != nil {
		t.Fatal(err)
	}
	d, err := newDNSServer(ts.srv, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.shutdown)
	return d
}

func exchange(t *testing.T, addr, net_, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: net_, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], net_, err)
	}
	return r
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%s:%d", v.Target, v.Port))
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestDNSNames(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	d := newTestDNS(t, ts, 5*time.Second)
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-1", Host: "10.0.0.1", Port: 8080, Tags: []string{"blue"}})
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-2", Host: "10.0.0.2", Port: 8081, Tags: []string{"green"}})
	ts.putInstance("n2", docker.Record{Service: "web", Name: "web-3", Host: "10.0.0.2", Port: 8082, Tags: []string{"blue"}})
	ts.putInstance("n3", docker.Record{Service: "web", Name: "web-4", Host: "2001:db8::4", Port: 8083})
	ts.putInstance("n3", docker.Record{Service: "web", Name: "web-5", Host: "10.0.0.5", Port: 8084, Health: docker.HealthUnhealthy})
	ts.putInstance("n3", docker.Record{Service: "web", Name: "web-6", Host: "10.0.0.6", Port: 8085, Maint: "deploy"})
	ts.putInstance("n1", docker.Record{Service: "db", Name: "db-1", Host: "10.0.0.9", Port: 5432, Health: docker.HealthUnhealthy})
	ts.putInstance("n1", docker.Record{Service: "dns", Name: "dns-1", Host: "10.0.0.7", Port: 53, Proto: "udp"})
	ts.putInstance("n1", docker.Record{Service: "named", Name: "named-1", Host: "db.example.com", Port: 5000})

	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.service.sd.test", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1", "10.0.0.2"}},
		{"WEB.Service.SD.test", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1", "10.0.0.2"}},
		{"web.service.sd.test", dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::4"}},
		{"web.service.sd.test", dns.TypeSRV, dns.RcodeSuccess, []string{
			"0a000001.addr.sd.test.:8080", "0a000002.addr.sd.test.:8081", "0a000002.addr.sd.test.:8082",
			"20010db8000000000000000000000004.addr.sd.test.:8083"}},
		{"blue.web.service.sd.test", dns.TypeSRV, dns.RcodeSuccess, []string{"0a000001.addr.sd.test.:8080", "0a000002.addr.sd.test.:8082"}},
		{"_web._green.service.sd.test", dns.TypeSRV, dns.RcodeSuccess, []string{"0a000002.addr.sd.test.:8081"}},
		{"_web._tcp.service.sd.test", dns.TypeSRV, dns.RcodeSuccess, []string{
			"0a000001.addr.sd.test.:8080", "0a000002.addr.sd.test.:8081", "0a000002.addr.sd.test.:8082",
			"20010db8000000000000000000000004.addr.sd.test.:8083"}},
		{"_web._udp.service.sd.test", dns.TypeSRV, dns.RcodeSuccess, nil}, // NODATA: no udp instance
		{"_dns._udp.service.sd.test", dns.TypeSRV, dns.RcodeSuccess, []string{"0a000007.addr.sd.test.:53"}},
		{"named.service.sd.test", dns.TypeSRV, dns.RcodeSuccess, []string{"db.example.com.:5000"}},
		{"named.service.sd.test", dns.TypeA, dns.RcodeSuccess, nil}, // a host name has no A here
		{"0a000002.addr.sd.test", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.2"}},
		{"n2.node.sd.test", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"N2.node.sd.test", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"n2.node.sd.test", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"nobody.node.sd.test", dns.TypeA, dns.RcodeNameError, nil},
		{"db.service.sd.test", dns.TypeA, dns.RcodeSuccess, nil},        // known, none healthy: NODATA
		{"web.service.sd.test", dns.TypeTXT, dns.RcodeSuccess, nil},     // no such type: NODATA
		{"red.web.service.sd.test", dns.TypeA, dns.RcodeNameError, nil}, // no instance has the tag
		{"nope.service.sd.test", dns.TypeA, dns.RcodeNameError, nil},
		{"a.b.c.service.sd.test", dns.TypeA, dns.RcodeNameError, nil},
		{"what.sd.test", dns.TypeA, dns.RcodeNameError, nil},
		{"zz.addr.sd.test", dns.TypeA, dns.RcodeNameError, nil},
		{"sd.test", dns.TypeSOA, dns.RcodeSuccess, []string{"sd.test.\t5\tIN\tSOA\tns.sd.test. hostmaster.sd.test. " + fmt.Sprint(uint32(ts.hub.version.Load())) + " 3600 600 86400 5"}},
		{"example.com", dns.TypeA, dns.RcodeRefused, nil},
		{"test", dns.TypeA, dns.RcodeRefused, nil},
		{"web.service.sd.test.example.com", dns.TypeA, dns.RcodeRefused, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			r := exchange(t, d.addr, network, tc.name, tc.qtype, 0)
			if r.Rcode != tc.rcode || !slices.Equal(answers(r), tc.want) {
				t.Errorf("%s %s over %s: %s %v, want %s %v", tc.name, dns.TypeToString[tc.qtype], network,
					dns.RcodeToString[r.Rcode], answers(r), dns.RcodeToString[tc.rcode], tc.want)
				continue
			}
			if r.RecursionAvailable {
				t.Errorf("%s: recursion offered", tc.name)
			}
			negative := len(r.Answer) == 0 && tc.rcode != dns.RcodeRefused
			if negative != (len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA) {
				t.Errorf("%s %s: authority %v", tc.name, dns.TypeToString[tc.qtype], r.Ns)
			}
			if tc.rcode == dns.RcodeRefused && (len(r.Ns) != 0 || r.Authoritative) {
				t.Errorf("%s: refused answer with authority %v, aa %v", tc.name, r.Ns, r.Authoritative)
			}
			for _, rr := range r.Answer {
				if rr.Header().Ttl != 5 {
					t.Errorf("%s: TTL %d, want 5", tc.name, rr.Header().Ttl)
				}
			}
		}
	}

	// SRV targets resolve: their A records come in the additional section.
	r := exchange(t, d.addr, "udp", "web.service.sd.test", dns.TypeSRV, 0)
	var extra []string
	for _, rr := range r.Extra {
		extra = append(extra, rr.String())
	}
	slices.Sort(extra)
	if len(extra) != 3 || !strings.Contains(extra[0], "0a000001.addr.sd.test.\t5\tIN\tA\t10.0.0.1") ||
		!strings.Contains(extra[2], "AAAA\t2001:db8::4") {
		t.Errorf("additional section %v", extra)
	}

	// Answers come in random order.
	orders := map[string]bool{}
	for range 40 {
		r := exchange(t, d.addr, "udp", "web.service.sd.test", dns.TypeSRV, 0)
		orders[fmt.Sprint(r.Answer)] = true
	}
	if len(orders) < 2 {
		t.Errorf("40 answers in one order")
	}

	// An instance that fails leaves the answers at once; one that recovers comes back.
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-1", Host: "10.0.0.1", Port: 8080, Health: docker.HealthUnhealthy})
	if got := answers(exchange(t, d.addr, "udp", "blue.web.service.sd.test", dns.TypeA, 0)); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Errorf("after a failure: %v", got)
	}

	m := testutil.ToFloat64(ts.srv.dnsMetrics.queries.WithLabelValues("A", "NXDOMAIN"))
	if m < 1 {
		t.Errorf("NXDOMAIN A queries counted %v", m)
	}
	if testutil.ToFloat64(ts.srv.dnsMetrics.queries.WithLabelValues("A", "REFUSED")) < 1 {
		t.Error("refused queries not counted")
	}
}

func TestDNSTruncation(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	d := newTestDNS(t, ts, 0)
	for i := range 200 {
		ts.putInstance("n2", docker.Record{Service: "big", Name: fmt.Sprintf("big-%d", i),
			Host: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Port: 9000 + i})
	}
	for _, tc := range []struct {
		edns, limit int
	}{{0, 512}, {1232, 1232}, {4096, 4096}, {65000, maxUDPAnswer}, {100, 512}} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeSRV} {
			r := exchange(t, d.addr, "udp", "big.service.sd.test", qt, uint16(tc.edns))
			r.Compress = true // as sent
			b, _ := r.Pack()
			if r.Truncated != (len(r.Answer) < 200 || qt == dns.TypeSRV && len(r.Extra) < 200) || !r.Truncated && tc.limit < 4096 ||
				len(b) > tc.limit || len(r.Answer) == 0 {
				t.Errorf("UDP, EDNS0 %d, %s: truncated %v, %d bytes (limit %d), %d answers", tc.edns, dns.TypeToString[qt],
					r.Truncated, len(b), tc.limit, len(r.Answer))
			}
			if (tc.edns > 0) != (r.IsEdns0() != nil) {
				t.Errorf("EDNS0 %d: OPT in the answer: %v", tc.edns, r.IsEdns0())
			}
		}
	}
	for _, qt := range []uint16{dns.TypeA, dns.TypeSRV} {
		r := exchange(t, d.addr, "tcp", "big.service.sd.test", qt, 0)
		if r.Truncated || len(r.Answer) != 200 {
			t.Errorf("TCP %s: truncated %v, %d answers, want 200", dns.TypeToString[qt], r.Truncated, len(r.Answer))
		}
		if qt == dns.TypeSRV && len(r.Extra) != 200 {
			t.Errorf("TCP SRV: %d additional records, want 200", len(r.Extra))
		}
	}
}

func TestDNSBadInput(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	d := newTestDNS(t, ts, 0)
	ts.putInstance("n1", docker.Record{Service: "web", Name: "web-1", Host: "10.0.0.1", Port: 80})

	conn, err := net.Dial("udp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := new(dns.Msg)
	good.SetQuestion("web.service.sd.test.", dns.TypeA)
	goodBytes, _ := good.Pack()
	twoQ := new(dns.Msg)
	twoQ.Question = []dns.Question{good.Question[0], good.Question[0]}
	twoQBytes, _ := twoQ.Pack()
	resp := new(dns.Msg)
	resp.SetQuestion("web.service.sd.test.", dns.TypeA)
	resp.Response = true
	respBytes, _ := resp.Pack()
	bad := [][]byte{
		{},                            // empty
		{1, 2, 3},                     // shorter than a header
		goodBytes[:len(goodBytes)-3],  // cut question
		append(goodBytes[:12:12], 63), // a label running off the end
		twoQBytes,                     // two questions
		respBytes,                     // a response, not a query
		[]byte(strings.Repeat("\xff", 600)),
	}
	before := testutil.ToFloat64(d.metrics.malformed)
	for _, b := range bad {
		conn.Write(b)
	}
	// None of them is answered: the next packet read is the good query's answer.
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write(goodBytes)
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var got dns.Msg
	if err := got.Unpack(buf[:n]); err != nil || got.Id != good.Id || len(got.Answer) != 1 {
		t.Fatalf("answer after bad packets: %v %v", err, &got)
	}
	if m := testutil.ToFloat64(d.metrics.malformed) - before; m < float64(len(bad)-1) { // the empty datagram may not arrive
		t.Errorf("malformed counted %v, want at least %d", m, len(bad)-1)
	}

	// An oversized name (over 255 bytes) cannot even be packed by the
	// client library; sent raw, it is dropped.
	long := strings.Repeat(strings.Repeat("a", 63)+".", 5) + "sd.test."
	raw := append([]byte{}, goodBytes[:12]...)
	for _, l := range strings.Split(strings.TrimSuffix(long, "."), ".") {
		raw = append(raw, byte(len(l)))
		raw = append(raw, l...)
	}
	raw = append(raw, 0, 0, 1, 0, 1)
	conn.Write(raw)
	conn.Write(goodBytes)
	n, err = conn.Read(buf)
	if err != nil || got.Unpack(buf[:n]) != nil || len(got.Answer) != 1 {
		t.Fatalf("answer after an oversized name: %v %v", err, &got)
	}

	// A flood from one address: memory stays bounded, answers go on.
	flood := 20000
	for range flood {
		conn.Write(goodBytes)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	read := 0
	for read < flood {
		if _, err := conn.Read(buf); err != nil {
			break
		}
		read++
	}
	if read == 0 {
		t.Fatal("no answer to a flood")
	}
	r := exchange(t, d.addr, "tcp", "web.service.sd.test", dns.TypeA, 0)
	if len(r.Answer) != 1 {
		t.Fatalf("after a flood: %v", r)
	}
	t.Logf("flood of %d queries: %d answers read, %v dropped as in flight", flood, read, testutil.ToFloat64(d.metrics.dropped))
}

func TestParseDNSName(t *testing.T) {
	for in, want := range map[string]dnsQuery{
		"":                   {kind: "apex"},
		"web.service":        {kind: "service", service: "web"},
		"v1.web.service":     {kind: "service", service: "web", tag: "v1"},
		"_web._tcp.service":  {kind: "service", service: "web", proto: "tcp"},
		"_web._v1.service":   {kind: "service", service: "web", tag: "v1"},
		"n1.node":            {kind: "node", node: "n1"},
		"host.a.b.node":      {kind: "node", node: "host.a.b"},
		"7f000001.addr":      {kind: "addr", ip: net.IP{127, 0, 0, 1}},
		"_web.service":       {kind: "service", service: "_web"},
		"web._tcp.service":   {kind: "service", service: "_tcp", tag: "web"},
		"_web._.service":     {},
		"service":            {},
		"node":               {},
		"a.b.c.service":      {},
		"7f00001.addr":       {},
		"zzzzzzzz.addr":      {},
		"web.services":       {},
		"web.service.extra":  {},
		".service":           {},
		"x..service":         {},
		"0a000001.addr.more": {},
	} {
		got, ok := parseDNSName(in)
		if ok != (want.kind != "") || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("parseDNSName(%q) = %+v %v, want %+v", in, got, ok, want)
		}
	}
}

func TestDNSFlags(t *testing.T) {
	var c agentConfig
	fs := newAgentFlagSet(&c)
	if _, err := parseFlags(fs, nil, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if c.dnsOpts.addr.addr != defaultDNSAddr || c.dnsOpts.addr.explicit || c.dnsOpts.domain != "scuttlebutt" || c.dnsOpts.ttl != 0 {
		t.Errorf("defaults %+v", c.dnsOpts)
	}
	c = agentConfig{}
	fs = newAgentFlagSet(&c)
	env := map[string]string{"SCUTTLEBUTT_DNS": "127.0.0.1:5353"}
	if _, err := parseFlags(fs, []string{"-dns-domain", "Consul.", "-dns-ttl", "30s"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := c.dnsOpts.check(); err != nil || !c.dnsOpts.addr.explicit || c.dnsOpts.domain != "consul" {
		t.Errorf("explicit %+v %v", c.dnsOpts, err)
	}
	for _, bad := range []dnsFlags{
		{addr: dnsAddrFlag{addr: "nope"}},
		{domain: "a..b"},
		{domain: "bad domain"},
		{ttl: -time.Second},
		{ttl: 48 * time.Hour},
	} {
		if err := bad.check(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestDNSDefaultAddrTaken: several agents on one host keep working when
// the default address is taken; an explicit address is an error.
func TestDNSDefaultAddrTaken(t *testing.T) {
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.LocalAddr().String()
	var logs syncBuffer
	start := func(f dnsFlags) (*agent, error) {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID, cfg.BindAddr = "dns-taken", "127.0.0.1:0"
		return startAgent(agentOptions{cfg: cfg, log: newLogger(&logs, "text", 0), dnsOpts: f})
	}
	a, err := start(dnsFlags{addr: dnsAddrFlag{addr: taken}})
	if err != nil {
		t.Fatalf("default address taken: %v", err)
	}
	a.shutdown(false)
	if a.dns != nil || strings.Count(logs.String(), "running without DNS") != 1 {
		t.Errorf("want one warning and no DNS server: %v\n%s", a.dns, logs.String())
	}
	if _, err := start(dnsFlags{addr: dnsAddrFlag{addr: taken, explicit: true}}); err == nil || !strings.Contains(err.Error(), "-dns") {
		t.Errorf("explicit address taken: %v", err)
	}
}
