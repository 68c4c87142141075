package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Guards of the HTTP API against browsers and greedy clients: the Host
// header check (DNS rebinding), bounds on /v1/watch streams, and a bound on
// connections per client address.

// hostGuard refuses requests whose Host header names a host this agent
// was not told about. A web page on any domain that resolves to 127.0.0.1
// is same-origin to the browser with that domain, so cross-origin checks
// pass; its Host header still carries the attacker's name, which is what
// this checks. IP literals are accepted (a browser sends one only to a page
// served from that address), and so are "localhost", names under
// ".localhost", this host's name, the host of -http and the names given by
// -http-allow-host.
type hostGuard struct {
	allowed map[string]bool // lower-case host names
	next    http.Handler
}

func newHostGuard(names []string, next http.Handler) *hostGuard {
	g := &hostGuard{allowed: map[string]bool{"localhost": true}, next: next}
	for _, n := range names {
		g.allowed[strings.ToLower(strings.TrimSuffix(n, "."))] = true
	}
	return g
}

func (g *hostGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	// No Host header at all (HTTP/1.0): browsers always send one, so a
	// request without it is no DNS rebinding.
	if r.Host == "" || net.ParseIP(host) != nil || g.allowed[host] || strings.HasSuffix(host, ".localhost") {
		g.next.ServeHTTP(w, r)
		return
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("Host %q refused (protection against DNS rebinding): "+
		"start the agent with -http-allow-host %s to accept this name", r.Host, host))
}

// streamLimit bounds the /v1/watch streams open at once, in all and per
// client address, so that clients cannot exhaust goroutines and memory.
type streamLimit struct {
	mu        sync.Mutex
	total     int
	perClient map[string]int
	max       int
	maxClient int
}

func newStreamLimit(max, maxClient int) *streamLimit {
	return &streamLimit{perClient: map[string]int{}, max: max, maxClient: maxClient}
}

// acquire takes a stream slot for the client at remoteAddr; it returns a
// release function, or an error saying which bound was reached.
func (l *streamLimit) acquire(remoteAddr string) (func(), error) {
	client := clientOf(remoteAddr)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.max:
		return nil, fmt.Errorf("too many watch streams: %d are open, the limit is %d (-http-max-watch)", l.total, l.max)
	case l.perClient[client] >= l.maxClient:
		return nil, fmt.Errorf("too many watch streams from %s: the limit is %d per client (-http-max-watch-per-client)", client, l.maxClient)
	}
	l.total++
	l.perClient[client]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if l.perClient[client]--; l.perClient[client] <= 0 {
			delete(l.perClient, client)
		}
	}, nil
}

// open returns the number of streams open.
func (l *streamLimit) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// clientOf is the client part of a remote address: its IP.
func clientOf(remoteAddr string) string {
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return h
	}
	return remoteAddr
}

// connLimitListener closes, at once, connections from a client address
// that already has max open: one client cannot take every file descriptor
// of the agent.
type connLimitListener struct {
	net.Listener
	max int
	mu  sync.Mutex
	per map[string]int
}

func newConnLimitListener(ln net.Listener, max int) *connLimitListener {
	return &connLimitListener{Listener: ln, max: max, per: map[string]int{}}
}

// Accept returns the next connection within the bound.
func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientOf(c.RemoteAddr().String())
		l.mu.Lock()
		if l.per[client] >= l.max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.per[client]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: func() { l.release(client) }}, nil
	}
}

func (l *connLimitListener) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per[client]--; l.per[client] <= 0 {
		delete(l.per, client)
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// httpFlags are the agent's flags of the HTTP API's protection.
type httpFlags struct {
	allowHosts        listFlag
	maxWatch          int
	maxWatchPerClient int
	maxConnsPerClient int
	tlsCert, tlsKey   string
}

func (h *httpFlags) register(fs *flag.FlagSet) {
	fs.Var(&h.allowHosts, "http-allow-host", "host `name` the HTTP API answers to besides IP addresses, localhost and this host's name (DNS rebinding protection); repeatable or comma-separated")
	fs.IntVar(&h.maxWatch, "http-max-watch", 256, "most /v1/watch `streams` open at once")
	fs.IntVar(&h.maxWatchPerClient, "http-max-watch-per-client", 32, "most /v1/watch `streams` open at once from one client address")
	fs.IntVar(&h.maxConnsPerClient, "http-max-conns-per-client", 128, "most HTTP `connections` open at once from one client address; more are closed at once")
	fs.StringVar(&h.tlsCert, "http-tls-cert", "", "PEM certificate `file`: serve the HTTP API over TLS (with -http-tls-key)")
	fs.StringVar(&h.tlsKey, "http-tls-key", "", "PEM private key `file` of -http-tls-cert")
}

// check validates the flags.
func (h *httpFlags) check() error {
	switch {
	case h.maxWatch < 1 || h.maxWatchPerClient < 1 || h.maxConnsPerClient < 1:
		return fmt.Errorf("-http-max-watch, -http-max-watch-per-client and -http-max-conns-per-client must be at least 1")
	case (h.tlsCert == "") != (h.tlsKey == ""):
		return fmt.Errorf("-http-tls-cert and -http-tls-key go together: give both or neither")
	}
	return nil
}
