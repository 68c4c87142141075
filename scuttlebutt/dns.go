package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// This file is the agent's DNS server: the healthy instances of the
// services view (views.go), answered from this node's state with no
// network round trip. It parses the name, asks the view, and builds the
// answer with github.com/miekg/dns types; docs/daemon.md "Consumers" lists
// the names.

// defaultDNSAddr is the default of -dns, Consul's.
const defaultDNSAddr = "127.0.0.1:8600"

// Limits of the DNS server.
const (
	// maxUDPAnswer caps the EDNS0 buffer size a client may ask for over
	// UDP: no answer is more than 8 times a query of 512 bytes.
	maxUDPAnswer = 4096
	// maxDNSInFlight bounds the queries answered at once; those beyond are
	// dropped and counted (a flood costs bounded memory).
	maxDNSInFlight = 1024
)

// dnsAddrFlag is -dns: an address, and whether it was given (on the
// command line or in the environment) rather than left at its default.
type dnsAddrFlag struct {
	addr     string
	explicit bool
}

func (f *dnsAddrFlag) String() string {
	if f == nil {
		return ""
	}
	return f.addr
}

// Set takes an address given explicitly.
func (f *dnsAddrFlag) Set(v string) error {
	f.addr, f.explicit = v, true
	return nil
}

// dnsFlags are the flags of the DNS server.
type dnsFlags struct {
	addr   dnsAddrFlag
	domain string
	ttl    time.Duration
}

func (d *dnsFlags) register(fs *flag.FlagSet) {
	d.addr.addr = defaultDNSAddr
	fs.Var(&d.addr, "dns", "UDP and TCP `address` of the DNS server (names <service>.service.<domain> and more, see docs/daemon.md); "+
		"empty disables it. When the default cannot be bound (another agent on this host has it) the agent warns and runs without DNS")
	fs.StringVar(&d.domain, "dns-domain", "scuttlebutt", "DNS `domain` answered; names outside it are refused")
	fs.DurationVar(&d.ttl, "dns-ttl", 0, "`TTL` of DNS answers (and of negative answers), whole seconds")
}

// check validates the flags and normalises the domain.
func (d *dnsFlags) check() error {
	if d.addr.addr != "" {
		if err := checkHostPort("-dns", d.addr.addr, false); err != nil {
			return err
		}
	}
	dom := strings.ToLower(strings.Trim(d.domain, "."))
	if d.domain == "" {
		dom = "scuttlebutt"
	}
	if !validDomain(dom) {
		return fmt.Errorf("-dns-domain %q: want a domain name such as scuttlebutt or sd.example.com", d.domain)
	}
	d.domain = dom
	if d.ttl < 0 || d.ttl > 24*time.Hour {
		return fmt.Errorf("-dns-ttl %v: want 0s to 24h", d.ttl)
	}
	return nil
}

// validDomain tells whether dom is a domain of at most 200 bytes whose
// labels are 1 to 63 bytes of [a-z0-9_-].
func validDomain(dom string) bool {
	if dom == "" || len(dom) > 200 {
		return false
	}
	for _, l := range strings.Split(dom, ".") {
		if l == "" || len(l) > 63 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}

// dnsMetrics count the DNS server's queries.
type dnsMetrics struct {
	queries   *prometheus.CounterVec // by type and rcode
	latency   prometheus.Histogram
	malformed prometheus.Counter
	dropped   prometheus.Counter
}

func newDNSMetrics() *dnsMetrics {
	return &dnsMetrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scuttlebutt_dns_queries_total",
			Help: "DNS queries answered, by query type (A, AAAA, SRV, ANY, other) and answer code (NOERROR, NXDOMAIN, REFUSED...).",
		}, []string{"type", "rcode"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scuttlebutt_dns_answer_duration_seconds",
			Help:    "Time from reading a DNS query to writing its answer.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05},
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scuttlebutt_dns_malformed_total",
			Help: "DNS packets that were not well-formed queries (dropped, or answered FORMERR/NOTIMP without data).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scuttlebutt_dns_dropped_total",
			Help: "DNS queries dropped unanswered because too many were in flight.",
		}),
	}
}

func (m *dnsMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.queries, m.latency, m.malformed, m.dropped}
}

// dnsServer serves DNS over UDP and TCP on one address.
type dnsServer struct {
	s        *server
	domain   string // lower case, without the final dot
	fqdn     string // domain + "."
	ttl      uint32
	metrics  *dnsMetrics
	udp, tcp *dns.Server
	addr     string
	inFlight atomic.Int64
	index    atomic.Pointer[dnsIndex]
}

// dnsIndex is the view of one services snapshot, by lower-case name.
type dnsIndex struct {
	snap   *servicesSnapshot
	byName map[string][]instanceView
}

// startDNS starts the agent's DNS server if -dns asks for one. A default
// address that cannot be bound (taken, most often) is a warning, not an
// error: several agents on one host must keep working.
func (a *agent) startDNS(f dnsFlags) error {
	if f.addr.addr == "" {
		return nil
	}
	if f.domain == "" {
		f.domain = "scuttlebutt"
	}
	d, err := newDNSServer(a.srv, f)
	if err != nil {
		if !f.addr.explicit {
			why := "the default DNS address cannot be bound"
			if errors.Is(err, syscall.EADDRINUSE) {
				why = "the default DNS address is taken (another agent on this host?)"
			}
			a.log.Warn(why+": running without DNS; give -dns ADDR to serve it elsewhere, or -dns '' to say so",
				"dns", f.addr.addr, "err", err)
			return nil
		}
		return fmt.Errorf("cannot serve DNS on %s: %w; choose another -dns address (or -dns '' to disable it)", f.addr.addr, err)
	}
	a.dns = d
	a.log.Info("serving DNS", "dns", d.addr, "domain", d.domain, "ttl", f.ttl)
	return nil
}

// stopDNS stops the DNS server, if any.
func (a *agent) stopDNS() {
	if a.dns != nil {
		a.dns.shutdown()
	}
}

func newDNSServer(s *server, f dnsFlags) (*dnsServer, error) {
	pc, ln, err := listenDNS(f.addr.addr)
	if err != nil {
		return nil, err
	}
	d := &dnsServer{s: s, domain: f.domain, fqdn: f.domain + ".", ttl: uint32(f.ttl / time.Second),
		metrics: s.dnsMetrics, addr: pc.LocalAddr().String()}
	accept := func(h dns.Header) dns.MsgAcceptAction {
		act := dns.DefaultMsgAcceptFunc(h)
		if act != dns.MsgAccept {
			d.metrics.malformed.Inc()
		}
		if act == dns.MsgReject {
			return dns.MsgIgnore // a malformed packet gets no answer: none can amplify
		}
		return act
	}
	invalid := func([]byte, error) { d.metrics.malformed.Inc() }
	d.udp = &dns.Server{PacketConn: pc, Handler: d, MsgAcceptFunc: accept, MsgInvalidFunc: invalid, UDPSize: 65535,
		DecorateWriter: dropFormErr}
	d.tcp = &dns.Server{Listener: ln, Handler: d, MsgAcceptFunc: accept, MsgInvalidFunc: invalid, DecorateWriter: dropFormErr,
		ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		go srv.ActivateAndServe()
	}
	return d, nil
}

// formErrDropper drops the FORMERR answers miekg/dns writes for queries
// it cannot parse (this server's own answers never are FORMERR): a
// malformed packet gets no answer.
type formErrDropper struct{ dns.Writer }

func dropFormErr(w dns.Writer) dns.Writer { return formErrDropper{w} }

// Write writes b unless it is a FORMERR answer.
func (f formErrDropper) Write(b []byte) (int, error) {
	if len(b) >= 4 && b[3]&0x0f == dns.RcodeFormatError {
		return len(b), nil
	}
	return f.Writer.Write(b)
}

// listenDNS binds UDP and TCP on one address; with port 0, on one free
// port for both.
func listenDNS(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = pc.LocalAddr().String()
		}
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt >= 20 {
			return nil, nil, err
		}
	}
}

func (d *dnsServer) shutdown() {
	d.udp.Shutdown()
	d.tcp.Shutdown()
}

// view returns the services of the current snapshot by lower-case name.
func (d *dnsServer) view() *dnsIndex {
	snap := d.s.services.get()
	if idx := d.index.Load(); idx != nil && idx.snap == snap {
		return idx
	}
	idx := &dnsIndex{snap: snap, byName: make(map[string][]instanceView, len(snap.byName))}
	for name, list := range snap.byName {
		k := strings.ToLower(name)
		idx.byName[k] = append(idx.byName[k], list...)
	}
	d.index.Store(idx)
	return idx
}

// ServeDNS answers one query.
func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	if d.inFlight.Add(1) > maxDNSInFlight {
		d.inFlight.Add(-1)
		d.metrics.dropped.Inc()
		return
	}
	defer d.inFlight.Add(-1)
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	m := d.answer(req, tcp)
	w.WriteMsg(m)
	qtype := "other"
	if len(req.Question) == 1 {
		switch t := req.Question[0].Qtype; t {
		case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeSOA, dns.TypeNS, dns.TypeTXT, dns.TypePTR:
			qtype = dns.TypeToString[t]
		}
	}
	d.metrics.queries.WithLabelValues(qtype, dns.RcodeToString[m.Rcode]).Inc()
	d.metrics.latency.Observe(time.Since(start).Seconds())
}

// answer builds the answer to req, truncated to what the client can take:
// over UDP its EDNS0 buffer (at most maxUDPAnswer; 512 bytes without
// EDNS0), with the TC bit set when records were left out; over TCP all.
func (d *dnsServer) answer(req *dns.Msg, tcp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	size := dns.MinMsgSize
	opt := req.IsEdns0()
	if opt != nil {
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPAnswer)
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	if len(req.Question) != 1 { // refused by the accept function; never so
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	switch q := req.Question[0]; {
	case opt != nil && opt.Version() != 0:
		m.Rcode = dns.RcodeBadVers
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		m.Rcode = dns.RcodeRefused
		m.Authoritative = false
	default:
		d.resolve(m, q)
	}
	if len(m.Answer) > 1 {
		rand.Shuffle(len(m.Answer), func(i, j int) { m.Answer[i], m.Answer[j] = m.Answer[j], m.Answer[i] })
	}
	if opt != nil {
		m.SetEdns0(uint16(min(size, maxUDPAnswer)), false)
	}
	m.Truncate(size)
	m.Compress = true
	return m
}

// dnsQuery is a name of the domain, parsed.
type dnsQuery struct {
	kind    string // "service", "node", "addr" or "apex"
	service string // lower case
	tag     string // "" for none
	proto   string // of an RFC 2782 name with _tcp, _udp or _sctp
	node    string
	ip      net.IP
}

// parseDNSName parses a lower-case name relative to the domain (without
// the domain and the dots around it); ok is false for a name that cannot
// exist.
func parseDNSName(rel string) (dnsQuery, bool) {
	if rel == "" {
		return dnsQuery{kind: "apex"}, true
	}
	labels := strings.Split(rel, ".")
	n := len(labels)
	last, rest := labels[n-1], labels[:n-1]
	switch last {
	case "service":
		switch {
		case len(rest) == 1 && rest[0] != "":
			return dnsQuery{kind: "service", service: rest[0]}, true
		case len(rest) == 2 && strings.HasPrefix(rest[0], "_") && strings.HasPrefix(rest[1], "_"):
			if len(rest[0]) < 2 || len(rest[1]) < 2 {
				break
			}
			q := dnsQuery{kind: "service", service: rest[0][1:]}
			switch p := rest[1][1:]; p {
			case "tcp", "udp", "sctp":
				q.proto = p
			default:
				q.tag = p
			}
			return q, true
		case len(rest) == 2 && rest[0] != "" && rest[1] != "":
			return dnsQuery{kind: "service", service: rest[1], tag: rest[0]}, true
		}
	case "node":
		if len(rest) > 0 {
			return dnsQuery{kind: "node", node: strings.Join(rest, ".")}, true
		}
	case "addr":
		if len(rest) == 1 && (len(rest[0]) == 8 || len(rest[0]) == 32) {
			if b, err := hex.DecodeString(rest[0]); err == nil {
				return dnsQuery{kind: "addr", ip: net.IP(b)}, true
			}
		}
	}
	return dnsQuery{}, false
}

// resolve fills m with the answer to q.
func (d *dnsServer) resolve(m *dns.Msg, q dns.Question) {
	name := strings.ToLower(q.Name)
	var rel string
	switch {
	case name == d.fqdn:
	case strings.HasSuffix(name, "."+d.fqdn):
		rel = strings.TrimSuffix(name, "."+d.fqdn)
	default:
		m.Rcode = dns.RcodeRefused // not ours: no recursion
		m.Authoritative = false
		return
	}
	pq, ok := parseDNSName(rel)
	if !ok {
		d.negative(m, dns.RcodeNameError)
		return
	}
	switch pq.kind {
	case "apex":
		if q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, d.soa())
			return
		}
	case "addr":
		if rr := d.addrRR(q.Name, pq.ip, q.Qtype); rr != nil {
			m.Answer = append(m.Answer, rr)
			return
		}
	case "node":
		ni, found := d.findNode(pq.node)
		if !found {
			d.negative(m, dns.RcodeNameError)
			return
		}
		host, _, _ := net.SplitHostPort(ni.Addr)
		if ip := net.ParseIP(host); ip != nil {
			if rr := d.addrRR(q.Name, ip, q.Qtype); rr != nil {
				m.Answer = append(m.Answer, rr)
				return
			}
		}
	case "service":
		list, found := d.view().byName[pq.service]
		if !found {
			d.negative(m, dns.RcodeNameError)
			return
		}
		if pq.tag != "" && !anyHasTag(list, pq.tag) {
			d.negative(m, dns.RcodeNameError)
			return
		}
		d.serviceAnswer(m, q, list, pq)
		if len(m.Answer) > 0 {
			return
		}
	}
	d.negative(m, dns.RcodeSuccess) // NODATA
}

// serviceAnswer adds the records of the healthy instances of list that
// match pq.
func (d *dnsServer) serviceAnswer(m *dns.Msg, q dns.Question, list []instanceView, pq dnsQuery) {
	seen := map[string]bool{}
	for _, in := range list {
		if !in.Healthy || pq.tag != "" && !hasTagFold(in.Tags, pq.tag) || pq.proto != "" && in.Proto != pq.proto {
			continue
		}
		ip := net.ParseIP(in.Host)
		switch q.Qtype {
		case dns.TypeSRV:
			srv := &dns.SRV{Hdr: d.hdr(q.Name, dns.TypeSRV), Priority: 1, Weight: 1, Port: uint16(in.Port)}
			if ip == nil {
				if _, ok := dns.IsDomainName(in.Host); !ok {
					continue
				}
				srv.Target = dns.Fqdn(in.Host)
			} else {
				srv.Target = addrName(ip, d.fqdn)
				if !seen[srv.Target] {
					seen[srv.Target] = true
					if rr := d.addrRR(srv.Target, ip, dns.TypeANY); rr != nil {
						m.Extra = append(m.Extra, rr)
					}
				}
			}
			m.Answer = append(m.Answer, srv)
		case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
			if ip == nil || seen[ip.String()] {
				continue
			}
			if rr := d.addrRR(q.Name, ip, q.Qtype); rr != nil {
				seen[ip.String()] = true
				m.Answer = append(m.Answer, rr)
			}
		}
	}
}

// addrRR returns the A or AAAA record of ip under name for a query of
// type qtype (ANY: whichever ip is); nil if the type does not match.
func (d *dnsServer) addrRR(name string, ip net.IP, qtype uint16) dns.RR {
	if v4 := ip.To4(); v4 != nil {
		if qtype == dns.TypeA || qtype == dns.TypeANY {
			return &dns.A{Hdr: d.hdr(name, dns.TypeA), A: v4}
		}
		return nil
	}
	if qtype == dns.TypeAAAA || qtype == dns.TypeANY {
		return &dns.AAAA{Hdr: d.hdr(name, dns.TypeAAAA), AAAA: ip.To16()}
	}
	return nil
}

// addrName is the name of an address: <hex>.addr.<domain>.
func addrName(ip net.IP, fqdn string) string {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return hex.EncodeToString(ip) + ".addr." + fqdn
}

func (d *dnsServer) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: d.ttl}
}

// negative makes m an NXDOMAIN (rcode NameError) or NODATA (Success)
// answer with the SOA in the authority section.
func (d *dnsServer) negative(m *dns.Msg, rcode int) {
	m.Rcode = rcode
	m.Answer = nil
	m.Ns = append(m.Ns, d.soa())
}

func (d *dnsServer) soa() dns.RR {
	return &dns.SOA{Hdr: d.hdr(d.fqdn, dns.TypeSOA), Ns: "ns." + d.fqdn, Mbox: "hostmaster." + d.fqdn,
		Serial: uint32(d.s.hub.version.Load()), Refresh: 3600, Retry: 600, Expire: 86400, Minttl: d.ttl}
}

// findNode finds a node by ID, case-insensitively; only live nodes.
func (d *dnsServer) findNode(id string) (scuttlebutt.NodeInfo, bool) {
	if ni, ok := d.s.node.NodeInfo(id); ok {
		return ni, ni.Status == scuttlebutt.StatusAlive
	}
	for _, ni := range d.s.node.Nodes() {
		if strings.EqualFold(ni.ID, id) {
			return ni, ni.Status == scuttlebutt.StatusAlive
		}
	}
	return scuttlebutt.NodeInfo{}, false
}

func anyHasTag(list []instanceView, tag string) bool {
	for _, in := range list {
		if hasTagFold(in.Tags, tag) {
			return true
		}
	}
	return false
}

func hasTagFold(tags []string, tag string) bool {
	for _, t := range tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}
