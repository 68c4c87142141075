package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"
)

// The HTTP API's connections are bounded in all and per client address.
// At the total bound a new connection makes room: the connection idle the
// longest (a keep-alive connection between requests, or one that has not
// sent its request yet) is closed; failing that, one of the client that
// holds the most connections, if it holds more than the newcomer plus one;
// only then is the newcomer refused. So idle connections, from however
// many source addresses, cannot lock others out of the API, and a client's
// share of the total is never less than what the others hold. Once a burst
// that reached the bound is over, the memory it took is given back to the
// operating system.

// warnEvery is the least time between two warnings of the same bound.
const warnEvery = time.Minute

// connLimitListener is the listener of the HTTP API with those bounds.
// Its connState must be the http.Server's ConnState, so that it knows
// which connections are idle.
type connLimitListener struct {
	net.Listener
	max      int // per client
	maxTotal int // in all; 0: no bound
	log      *slog.Logger

	mu       sync.Mutex
	per      map[string]int
	conns    map[*guardedConn]struct{}
	peaked   bool // the total bound was reached since memory was last given back
	lastFree time.Time
	warned   map[string]time.Time // by bound
	refused  map[string]uint64    // connections refused or closed, by bound
}

// newConnLimitListener bounds ln's connections to max per client address
// and maxTotal in all (0: no total bound). log may be nil.
func newConnLimitListener(ln net.Listener, max, maxTotal int, log *slog.Logger) *connLimitListener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &connLimitListener{Listener: ln, max: max, maxTotal: maxTotal, log: log,
		per: map[string]int{}, conns: map[*guardedConn]struct{}{}, warned: map[string]time.Time{}, refused: map[string]uint64{}}
}

// guardedConn is a connection of the API, with the state the server gave it.
type guardedConn struct {
	net.Conn
	l      *connLimitListener
	client string
	// guarded by l.mu
	idle     bool      // no request in progress (new or between requests)
	since    time.Time // when it became idle, or was accepted
	released bool
}

// Close closes the connection and gives its slot back.
func (c *guardedConn) Close() error {
	c.l.release(c)
	return c.Conn.Close()
}

// Accept returns the next connection within the bounds, making room for it
// at the total bound.
func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientOf(c.RemoteAddr().String())
		now := time.Now()
		l.mu.Lock()
		if l.per[client] >= l.max {
			l.refusedLocked("per_client", now, "an HTTP client reached its bound of connections (-http-max-conns-per-client); its new connections are closed",
				"client", client, "limit", l.max)
			l.mu.Unlock()
			c.Close()
			continue
		}
		var victim *guardedConn
		if l.maxTotal > 0 && len(l.conns) >= l.maxTotal {
			l.peaked = true
			if victim = l.oldestIdleLocked(); victim != nil {
				l.refusedLocked("idle", now, "HTTP connections reached their bound (-http-max-conns): the connections idle the longest are closed to make room",
					"limit", l.maxTotal, "clients", len(l.per))
			} else if victim = l.greediestLocked(client); victim != nil {
				l.refusedLocked("fair_share", now, "HTTP connections reached their bound (-http-max-conns) and none is idle: connections of the clients holding the most are closed to make room",
					"limit", l.maxTotal, "clients", len(l.per), "closed_client", victim.client)
			} else {
				l.refusedLocked("total", now, "HTTP connections reached their bound (-http-max-conns), none idle, every client within its share: new connections are closed",
					"limit", l.maxTotal, "clients", len(l.per))
				l.mu.Unlock()
				c.Close()
				continue
			}
			l.releaseLocked(victim)
		}
		gc := &guardedConn{Conn: c, l: l, client: client, idle: true, since: now}
		l.conns[gc] = struct{}{}
		l.per[client]++
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close() // its server goroutine sees the error and ends
		}
		return gc, nil
	}
}

// oldestIdleLocked returns the connection idle the longest, or nil.
func (l *connLimitListener) oldestIdleLocked() *guardedConn {
	var best *guardedConn
	for c := range l.conns {
		if c.idle && (best == nil || c.since.Before(best.since)) {
			best = c
		}
	}
	return best
}

// greediestLocked returns the oldest connection of the client holding the
// most, if it holds more than client's count plus one; else nil.
func (l *connLimitListener) greediestLocked(client string) *guardedConn {
	top, most := "", 0
	for cl, n := range l.per {
		if n > most {
			top, most = cl, n
		}
	}
	if most <= l.per[client]+1 {
		return nil
	}
	var best *guardedConn
	for c := range l.conns {
		if c.client == top && (best == nil || c.since.Before(best.since)) {
			best = c
		}
	}
	return best
}

// refusedLocked counts a connection refused or closed at a bound and logs
// a warning, at most once a minute per bound.
func (l *connLimitListener) refusedLocked(bound string, now time.Time, msg string, args ...any) {
	l.refused[bound]++
	if now.Sub(l.warned[bound]) < warnEvery {
		return
	}
	l.warned[bound] = now
	l.log.Warn(msg, append(args, "connections", len(l.conns), "closed_so_far", l.refused[bound])...)
}

func (l *connLimitListener) release(c *guardedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseLocked(c)
}

func (l *connLimitListener) releaseLocked(c *guardedConn) {
	if c.released {
		return
	}
	c.released = true
	delete(l.conns, c)
	if l.per[c.client]--; l.per[c.client] <= 0 {
		delete(l.per, c.client)
	}
	// A burst that reached the bound is over: give its memory back.
	if l.peaked && len(l.conns) <= l.maxTotal/8 && time.Since(l.lastFree) > 10*time.Second {
		l.peaked, l.lastFree = false, time.Now()
		go debug.FreeOSMemory()
	}
}

// connState follows the state of the server's connections (it is the
// http.Server's ConnState).
func (l *connLimitListener) connState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*guardedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateNew, http.StateIdle:
		c.idle, c.since = true, time.Now()
	case http.StateActive:
		c.idle = false
	case http.StateHijacked, http.StateClosed:
		l.releaseLocked(c)
	}
}

// stats returns the connections open and those refused or closed at each
// bound.
func (l *connLimitListener) stats() (open int, refused map[string]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	refused = make(map[string]uint64, len(l.refused))
	for k, v := range l.refused {
		refused[k] = v
	}
	return len(l.conns), refused
}

// String describes the bounds, for the log.
func (l *connLimitListener) String() string {
	return fmt.Sprintf("%d connections, %d per client", l.maxTotal, l.max)
}
