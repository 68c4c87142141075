package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
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
// At the total bound a newcomer takes a stream from the client holding
// the most, if that client holds more than the newcomer plus one: no set
// of clients, however many addresses they use, keeps another client
// below its share of the streams.
type streamLimit struct {
	mu        sync.Mutex
	total     int
	perClient map[string][]*stream // newest last
	max       int
	maxClient int
	log       *slog.Logger
	warned    time.Time
}

// stream is one open stream; shed is closed when it must end to make room.
type stream struct {
	shed   chan struct{}
	client string
	gone   bool
}

func newStreamLimit(max, maxClient int) *streamLimit {
	return &streamLimit{perClient: map[string][]*stream{}, max: max, maxClient: maxClient, log: slog.New(slog.DiscardHandler)}
}

// acquire takes a stream slot for the client at remoteAddr; it returns a
// release function and a channel closed when the stream must end to make
// room for another client, or an error saying which bound was reached.
func (l *streamLimit) acquire(remoteAddr string) (func(), <-chan struct{}, error) {
	client := clientOf(remoteAddr)
	l.mu.Lock()
	defer l.mu.Unlock()
	mine := len(l.perClient[client])
	if mine >= l.maxClient {
		return nil, nil, fmt.Errorf("too many watch streams from %s: the limit is %d per client (-http-max-watch-per-client)", client, l.maxClient)
	}
	if l.total >= l.max {
		top, most := "", 0
		for c, ss := range l.perClient {
			if len(ss) > most {
				top, most = c, len(ss)
			}
		}
		if most <= mine+1 {
			return nil, nil, fmt.Errorf("too many watch streams: %d are open, the limit is %d (-http-max-watch), and no client holds more than its share", l.total, l.max)
		}
		ss := l.perClient[top]
		victim := ss[len(ss)-1]
		l.dropLocked(victim)
		close(victim.shed)
		if now := time.Now(); now.Sub(l.warned) >= warnEvery {
			l.warned = now
			l.log.Warn("watch streams reached their bound (-http-max-watch): streams of the clients holding the most are ended to make room",
				"limit", l.max, "client", top, "its_streams", most, "for", client)
		}
	}
	st := &stream{shed: make(chan struct{}), client: client}
	l.total++
	l.perClient[client] = append(l.perClient[client], st)
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.dropLocked(st)
	}, st.shed, nil
}

func (l *streamLimit) dropLocked(st *stream) {
	if st.gone {
		return
	}
	st.gone = true
	l.total--
	ss := slices.DeleteFunc(l.perClient[st.client], func(s *stream) bool { return s == st })
	if len(ss) == 0 {
		delete(l.perClient, st.client)
	} else {
		l.perClient[st.client] = ss
	}
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

// httpFlags are the agent's flags of the HTTP API's protection.
type httpFlags struct {
	allowHosts        listFlag
	maxWatch          int
	maxWatchPerClient int
	maxConnsPerClient int
	maxConns          int           // in all; clamped to the open-file limit
	idleTimeout       time.Duration // of keep-alive connections
	tlsCert, tlsKey   string
}

func (h *httpFlags) register(fs *flag.FlagSet) {
	fs.Var(&h.allowHosts, "http-allow-host", "host `name` the HTTP API answers to besides IP addresses, localhost and this host's name (DNS rebinding protection); repeatable or comma-separated")
	fs.IntVar(&h.maxWatch, "http-max-watch", 256, "most /v1/watch `streams` open at once")
	fs.IntVar(&h.maxWatchPerClient, "http-max-watch-per-client", 32, "most /v1/watch `streams` open at once from one client address")
	fs.IntVar(&h.maxConnsPerClient, "http-max-conns-per-client", 128, "most HTTP `connections` open at once from one client address; more are closed at once")
	fs.IntVar(&h.maxConns, "http-max-conns", defaultMaxConns, "most HTTP `connections` open at once in all (at most the open-file limit less "+fmt.Sprint(fdReserve)+"); at the bound the connection idle the longest is closed to make room")
	fs.DurationVar(&h.idleTimeout, "http-idle-timeout", 30*time.Second, "`time` a keep-alive HTTP connection may stay idle between requests")
	fs.StringVar(&h.tlsCert, "http-tls-cert", "", "PEM certificate `file`: serve the HTTP API over TLS (with -http-tls-key)")
	fs.StringVar(&h.tlsKey, "http-tls-key", "", "PEM private key `file` of -http-tls-cert")
}

// check validates the flags.
func (h *httpFlags) check() error {
	switch {
	case h.maxWatch < 1 || h.maxWatchPerClient < 1 || h.maxConnsPerClient < 1 || h.maxConns < 1:
		return fmt.Errorf("-http-max-watch, -http-max-watch-per-client, -http-max-conns and -http-max-conns-per-client must be at least 1")
	case h.idleTimeout <= 0:
		return fmt.Errorf("-http-idle-timeout %v: want a positive duration, such as 30s", h.idleTimeout)
	case (h.tlsCert == "") != (h.tlsKey == ""):
		return fmt.Errorf("-http-tls-cert and -http-tls-key go together: give both or neither")
	}
	return nil
}
