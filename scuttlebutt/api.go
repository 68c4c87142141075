package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/lease"
)

// maxBodySlack is what a request body may hold besides a value: the JSON
// around it, and escapes (a value of control bytes grows 6 times in JSON).
const maxBodySlack = 1024

// server is the HTTP API, the web page and the metrics of one node.
type server struct {
	node     clusterNode // writes of this node's keys go through it
	hub      *hub
	decom    *decommissions
	services *servicesCache
	log      *slog.Logger
	started  time.Time

	token         string // required for writes when set
	loopbackOnly  bool   // the API listens on loopback only: writes need no token
	maxValue      int    // largest value a key may have
	dockerOwned   bool   // svc/ keys belong to the Docker adapter
	rolesOwned    bool   // the role keys belong to the role choice (-servers)
	metrics       http.Handler
	ctx           context.Context // ends when the server shuts down (ends /v1/watch streams)
	keys          *keyManager     // nil: the agent does not encrypt
	watches       *streamLimit
	handler       http.Handler
	checks        *checkMetrics      // health checks run on this host
	registrations *registrations     // services registered by watchers
	leases        *leaseManager      // start-up leases held for the CLI
	dnsMetrics    *dnsMetrics        // of the DNS server (dns.go), if any
	cluster       string             // the cluster ID: the Consul-compatible API's datacenter
	conns         *connLimitListener // the HTTP listener, for /metrics; nil without one
	maint         *maintStore        // -data-dir's maintenance file; nil without -data-dir
	consulIdx     *consulIndexes     // consul.go
	consulChanges *changeNotifier
}

type serverOptions struct {
	token        string
	loopbackOnly bool
	maxValue     int
	dockerOwned  bool
	rolesOwned   bool // the role keys belong to -servers
	log          *slog.Logger
	ctx          context.Context
	keys         *keyManager
	// checkHosts refuses Host headers other than IP literals, localhost
	// and allowHosts (hostGuard).
	checkHosts                  bool
	allowHosts                  []string
	maxWatch, maxWatchPerClient int // 0: 256 and 32
	leaseOpts                   lease.Options
	cluster                     string             // the cluster ID
	conns                       *connLimitListener // the HTTP listener's bounds, for /metrics; nil: none
	maint                       *maintStore        // -data-dir: where maintenance set through the API is kept; nil: not kept
}

func newServer(n clusterNode, h *hub, d *decommissions, opt serverOptions) *server {
	if opt.log == nil {
		opt.log = slog.New(slog.DiscardHandler)
	}
	if opt.ctx == nil {
		opt.ctx = context.Background()
	}
	if opt.maxValue == 0 {
		opt.maxValue = scuttlebutt.MaxValueSize(scuttlebutt.DefaultLANConfig().MaxPacketSize)
	}
	s := &server{
		node: n, hub: h, decom: d, log: opt.log, started: time.Now(),
		services: &servicesCache{node: n, hub: h},
		token:    opt.token, loopbackOnly: opt.loopbackOnly, maxValue: opt.maxValue,
		dockerOwned: opt.dockerOwned, rolesOwned: opt.rolesOwned, ctx: opt.ctx, keys: opt.keys, cluster: opt.cluster, conns: opt.conns, maint: opt.maint,
		watches: newStreamLimit(cmp.Or(opt.maxWatch, 256), cmp.Or(opt.maxWatchPerClient, 32)),
	}
	s.watches.log = opt.log
	s.checks = newCheckMetrics()
	s.dnsMetrics = newDNSMetrics()
	s.registrations = newRegistrations(n, opt.maxValue, opt.log, opt.ctx)
	s.leases = newLeaseManager(n, opt.leaseOpts, opt.log, opt.ctx)
	s.metrics = newMetricsHandler(s)
	s.handler = s.routes()
	if opt.checkHosts {
		s.handler = newHostGuard(opt.allowHosts, s.handler)
	}
	return s
}

// ServeHTTP serves the API.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handlePage)
	mux.HandleFunc("GET /ui/cluster", s.handleFragment)
	mux.HandleFunc("GET /services", s.handleServicesText)
	mux.HandleFunc("GET /services.json", s.handleServicesJSON)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.Handle("GET /metrics", s.metrics)

	mux.HandleFunc("GET /v1/nodes", s.handleNodes)
	mux.HandleFunc("GET /v1/nodes/{id}", s.handleNode)
	mux.HandleFunc("GET /v1/services", s.handleServices)
	mux.HandleFunc("GET /v1/services/{name}", s.handleService)
	mux.HandleFunc("GET /v1/kv/{key...}", s.handleKVGet)
	mux.HandleFunc("GET /v1/decommissions", s.handleDecommissions)
	mux.HandleFunc("GET /v1/watch", s.handleWatch)
	mux.HandleFunc("GET /v1/monitoring", s.handleMonitoring)
	s.healthRoutes(mux)

	writes := http.NewServeMux()
	writes.HandleFunc("PUT /v1/kv/{key...}", s.handleKVPut)
	writes.HandleFunc("DELETE /v1/kv/{key...}", s.handleKVDelete)
	writes.HandleFunc("POST /v1/nodes/{id}/decommission", s.handleDecommission)
	writes.HandleFunc("DELETE /v1/nodes/{id}/decommission", s.handleClearDecommission)
	writes.HandleFunc("GET /v1/keys", s.handleKeys)
	writes.HandleFunc("POST /v1/keys", s.handleKeyInstall)
	writes.HandleFunc("POST /v1/keys/{fingerprint}/use", s.handleKeyUse)
	writes.HandleFunc("DELETE /v1/keys/{fingerprint}", s.handleKeyRemove)
	guarded := s.requireWrite(writes)
	mux.Handle("PUT /v1/kv/{key...}", guarded)
	mux.Handle("DELETE /v1/kv/{key...}", guarded)
	mux.Handle("POST /v1/nodes/{id}/decommission", guarded)
	mux.Handle("DELETE /v1/nodes/{id}/decommission", guarded)
	// The keyring: key changes are writes, and so is the listing.
	mux.Handle("GET /v1/keys", guarded)
	mux.Handle("POST /v1/keys", guarded)
	mux.Handle("POST /v1/keys/{fingerprint}/use", guarded)
	mux.Handle("DELETE /v1/keys/{fingerprint}", guarded)
	s.healthWriteRoutes(mux, s.requireWrite)
	s.consumerRoutes(mux, s.requireWrite)

	return s.recoverer(literalPaths(jsonNotFound(mux)))
}

// jsonNotFound answers unknown routes and methods with JSON errors instead
// of the mux's plain text.
func jsonNotFound(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the path values
			return
		}
		// Let the mux decide between 404, 405 and redirects, then rewrite.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.code {
		case http.StatusMethodNotAllowed:
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)",
				r.Method, r.URL.Path, rec.header.Get("Allow")))
		case http.StatusNotFound:
			writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s (see docs/daemon.md)", r.Method, r.URL.Path))
		default:
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			w.Write(rec.body.Bytes())
		}
	})
}

type statusRecorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

// recoverer turns a panic in a handler into a logged 500 rather than a
// dropped connection. No handler is meant to panic.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// requireWrite enforces the write policy: a token when one is set or when
// the API listens beyond loopback, and no cross-origin browser requests.
func (s *server) requireWrite(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin write refused")
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token == "" {
			if !s.loopbackOnly {
				writeError(w, http.StatusForbidden, "writes are disabled: the HTTP API listens beyond loopback and no token is set; "+
					"start the agent with -token or SCUTTLEBUTT_TOKEN")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scuttlebutt"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong token: send the header \"Authorization: Bearer <token>\" "+
				"(the CLI reads -token or SCUTTLEBUTT_TOKEN)")
			return
		}
		next.ServeHTTP(w, r)
	}))
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b)
	w.Write([]byte{'\n'})
}

// readBody reads a request body of at most limit bytes; it writes the 4xx
// and returns false when the body is larger or unreadable.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", limit))
		} else {
			writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		}
		return nil, false
	}
	return b, true
}

// nodeError maps an error of the node to a status code.
func nodeError(w http.ResponseWriter, err error) {
	var size *scuttlebutt.SizeError
	var limit *scuttlebutt.LimitError
	switch {
	case errors.As(err, &limit):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("this node's state is full: its limit %s is reached "+
			"(the limits are fixed in the agent, see docs/daemon.md); delete keys of this node first", limit.Limit))
	case errors.As(err, &size):
		writeError(w, http.StatusRequestEntityTooLarge, strings.TrimPrefix(err.Error(), "scuttlebutt: ")+" (fixed in the agent)")
	case errors.Is(err, scuttlebutt.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the node is shutting down")
	default:
		writeError(w, http.StatusBadRequest, err.Error())
	}
}

func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "id": s.node.ID(), "addr": s.node.Addr(),
		"uptime_seconds": int64(time.Since(s.started).Seconds()),
	})
}

func (s *server) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"self": s.node.ID(), "nodes": s.nodes()})
}

func (s *server) handleNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ni, ok := s.node.NodeInfo(id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown node %q", id))
		return
	}
	state, _ := s.node.State(id)
	if state == nil {
		state = map[string]string{}
	}
	writeJSON(w, http.StatusOK, nodeDetail{nodeView: s.nodeView(ni), State: state})
}

func (s *server) handleServices(w http.ResponseWriter, r *http.Request) {
	snap := s.services.get()
	writeJSON(w, http.StatusOK, map[string]any{"services": snap.summaries(), "instances": snap.byName})
}

func (s *server) handleService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	onlyHealthy, ok := boolParam(w, r, "healthy")
	if !ok {
		return
	}
	list, found := s.services.get().byName[name]
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no instance of service %q on a live node", name))
		return
	}
	out := make([]instanceView, 0, len(list))
	for _, in := range list {
		if !onlyHealthy || in.Healthy {
			out = append(out, in)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"service": name, "instances": out})
}

func boolParam(w http.ResponseWriter, r *http.Request, name string) (bool, bool) {
	switch v := r.URL.Query().Get(name); v {
	case "", "0", "false", "no":
		return false, true
	case "1", "true", "yes":
		return true, true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %s=%q: want true or false", name, v))
		return false, false
	}
}

// Header values of the cached answers, shared by every response.
var (
	hdrJSON    = []string{"application/json; charset=utf-8"}
	hdrText    = []string{"text/plain; charset=utf-8"}
	hdrVary    = []string{"Accept-Encoding"}
	hdrNoCache = []string{"no-cache"}
	hdrGzip    = []string{"gzip"}
	hdrNoSniff = []string{"nosniff"}
)

// serveCached serves a prebuilt body (index 0 of snap.lengths for the JSON,
// 2 for the text), gzipped when the client accepts it.
func serveCached(w http.ResponseWriter, r *http.Request, snap *servicesSnapshot, text bool) {
	h := w.Header()
	body, gz, idx, ct := snap.pretty, snap.prettyGz, 0, hdrJSON
	if text {
		body, gz, idx, ct = snap.text, snap.textGz, 2, hdrText
	}
	h["Content-Type"] = ct
	h["Etag"] = []string{snap.etag}
	h["Vary"] = hdrVary
	h["Cache-Control"] = hdrNoCache
	h["X-Content-Type-Options"] = hdrNoSniff
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == snap.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if acceptsGzip(r) {
		h["Content-Encoding"] = hdrGzip
		body, idx = gz, idx+1
	}
	h["Content-Length"] = snap.lengths[idx]
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		if q, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
				return false
			}
		}
		return true
	}
	return false
}

func (s *server) handleServicesJSON(w http.ResponseWriter, r *http.Request) {
	serveCached(w, r, s.services.get(), false)
}

func (s *server) handleServicesText(w http.ResponseWriter, r *http.Request) {
	serveCached(w, r, s.services.get(), true)
}

type kvEntry struct {
	Node  string `json:"node"`
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (s *server) handleKVGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	id := r.URL.Query().Get("node")
	if id == "" {
		id = s.node.ID()
	}
	if _, ok := s.node.NodeInfo(id); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown node %q", id))
		return
	}
	v, ok := s.node.Lookup(id, key)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q has no key %q", id, key))
		return
	}
	writeJSON(w, http.StatusOK, kvEntry{Node: id, Key: key, Value: v})
}

// checkWritableKey refuses keys the daemon keeps for itself.
func (s *server) checkWritableKey(w http.ResponseWriter, key string) bool {
	switch {
	case key == "":
		writeError(w, http.StatusBadRequest, "empty key")
	case len(key) > scuttlebutt.MaxKeySize:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("key is %d bytes, the limit is %d", len(key), scuttlebutt.MaxKeySize))
	case s.rolesOwned && (key == roleKey || key == bootstrapKey):
		writeError(w, http.StatusConflict, fmt.Sprintf("key %q belongs to the role choice of this agent (-servers)", key))
	case s.dockerOwned && strings.HasPrefix(key, docker.KeyPrefix):
		writeError(w, http.StatusConflict, fmt.Sprintf("keys starting with %q belong to the Docker adapter on this agent (-docker)", docker.KeyPrefix))
	default:
		if err := checkKeyPath(key); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return false
		}
		if msg, reserved := reservedOwner(key); reserved {
			writeError(w, http.StatusBadRequest, msg)
			return false
		}
		return true
	}
	return false
}

func (s *server) handleKVPut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !s.checkWritableKey(w, key) {
		return
	}
	body, ok := readBody(w, r, int64(6*s.maxValue+maxBodySlack))
	if !ok {
		return
	}
	value := string(body)
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		var req struct {
			Value *string `json:"value"`
		}
		if err := decodeStrict(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "malformed JSON body: want {\"value\": \"...\"}: "+err.Error())
			return
		}
		if req.Value == nil {
			writeError(w, http.StatusBadRequest, "JSON body has no \"value\" field")
			return
		}
		value = *req.Value
	}
	if len(value) > s.maxValue {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value is %d bytes, the limit is %d", len(value), s.maxValue))
		return
	}
	if strings.HasPrefix(key, docker.KeyPrefix) {
		if _, err := docker.DecodeRecord(value); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("values of %q keys are service records (see docs/daemon.md): %v", docker.KeyPrefix, err))
			return
		}
	}
	if err := s.node.UpdateLocal(key, value); err != nil {
		nodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, kvEntry{Node: s.node.ID(), Key: key, Value: value})
}

func (s *server) handleKVDelete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !s.checkWritableKey(w, key) {
		return
	}
	if _, ok := s.node.Lookup(s.node.ID(), key); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("this node has no key %q", key))
		return
	}
	if err := s.node.DeleteLocal(key); err != nil {
		nodeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleDecommissions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"decommissions": s.decom.list()})
}

func (s *server) handleClearDecommission(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if m, ok := s.decom.get(id); !ok || m.Cleared {
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q is not decommissioned", id))
		return
	}
	m, err := s.decom.set(id, true)
	if err != nil {
		nodeError(w, err)
		return
	}
	s.log.Info("decommission cleared", "node", id, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, decommissionView{ID: id, By: m.By, At: time.Unix(0, m.At).UTC(), Cleared: true})
}

// handleWatch streams the cluster's changes as server-sent events:
// "event: <status|update|delete>" and a JSON "data:" line per change,
// after a first "hello" event. ?node= and ?prefix= filter key events.
func (s *server) handleWatch(w http.ResponseWriter, r *http.Request) {
	node, prefix := r.URL.Query().Get("node"), r.URL.Query().Get("prefix")
	release, shed, err := s.watches.acquire(r.RemoteAddr)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, err.Error())
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // a stream has no end
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	hello, _ := json.Marshal(map[string]any{"node": s.node.ID(), "version": s.hub.version.Load()})
	fmt.Fprintf(w, "retry: 2000\nevent: hello\ndata: %s\n\n", hello)
	if rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		case <-shed:
			io.WriteString(w, ": closed to make room for another client: the watch streams are at their bound (-http-max-watch)\n\n")
			rc.Flush()
			return
		case <-ping.C:
			io.WriteString(w, ": ping\n\n")
		case e, ok := <-sub.ch:
			if !ok {
				io.WriteString(w, "event: overflow\ndata: {}\n\n")
				rc.Flush()
				return
			}
			if e.Type != "status" && (node != "" && e.Node != node || !strings.HasPrefix(e.Key, prefix)) {
				continue
			}
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, b)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// isLoopbackListen reports whether an HTTP listen address is reachable from
// this host only.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
