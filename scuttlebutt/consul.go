package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// This file is the Consul-compatible read API: the endpoints and fields
// that Consul's clients (github.com/hashicorp/consul/api, Prometheus's
// consul_sd_configs, consul-template, Traefik...) read, answered from the
// services view (views.go), with blocking queries. docs/daemon.md
// "Consumers" says which endpoints and fields exist and which do not.

// Blocking queries, as Consul's.
const (
	consulDefaultWait = 5 * time.Minute
	consulMaxWait     = 10 * time.Minute
	maxConsulIndexes  = 4096 // answers whose index is remembered; past it, forgotten (a spurious wake-up, no more)
)

// Consul's health statuses and maintenance check IDs.
const (
	consulPassing       = "passing"
	consulWarning       = "warning"
	consulCritical      = "critical"
	consulNodeMaint     = "_node_maintenance"
	consulServiceMaint  = "_service_maintenance:"
	consulSerfHealth    = "serfHealth"
	consulServiceCheck  = "service:"
	consulNoIndexFilter = "filter"
)

// consulNode is Consul's api.Node.
type consulNode struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

// consulWeights is Consul's api.AgentWeights.
type consulWeights struct {
	Passing int
	Warning int
}

// consulService is Consul's api.AgentService (the fields it fills).
type consulService struct {
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	Weights           consulWeights
	EnableTagOverride bool
	Datacenter        string
	CreateIndex       uint64
	ModifyIndex       uint64
}

// consulCheck is Consul's api.HealthCheck.
type consulCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	CreateIndex uint64
	ModifyIndex uint64
}

// consulServiceEntry is Consul's api.ServiceEntry.
type consulServiceEntry struct {
	Node    consulNode
	Service consulService
	Checks  []consulCheck
}

// consulCatalogService is Consul's api.CatalogService.
type consulCatalogService struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceID                string
	ServiceName              string
	ServiceAddress           string
	ServiceTags              []string
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceWeights           consulWeights
	ServiceEnableTagOverride bool
	CreateIndex              uint64
	ModifyIndex              uint64
}

// consulIndexes gives each answer an index that rises exactly when the
// answer changes: the answer's hash is remembered with its index, and a
// new hash takes the next index. Indexes start at the agent's start time
// in milliseconds, so that they do not go backwards across restarts.
type consulIndexes struct {
	mu   sync.Mutex
	next uint64
	seen map[string]consulIndexed
}

type consulIndexed struct {
	hash  uint64
	index uint64
}

func newConsulIndexes() *consulIndexes {
	return &consulIndexes{next: uint64(time.Now().UnixMilli()), seen: map[string]consulIndexed{}}
}

// index returns the index of the answer body to the query key.
func (c *consulIndexes) index(key string, body []byte) uint64 {
	h := fnv.New64a()
	h.Write(body)
	sum := h.Sum64()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[key]; ok && e.hash == sum {
		return e.index
	}
	if len(c.seen) >= maxConsulIndexes {
		clear(c.seen)
	}
	c.next++
	c.seen[key] = consulIndexed{hash: sum, index: c.next}
	return c.next
}

// current is the highest index given.
func (c *consulIndexes) current() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

// changeNotifier wakes blocked queries when the cluster changes: one
// subscriber of the hub closes the current channel at every event.
type changeNotifier struct {
	once sync.Once
	mu   sync.Mutex
	ch   chan struct{}
}

// changed returns a channel closed at the next change.
func (s *server) changed() <-chan struct{} {
	n := s.consulChanges
	n.once.Do(func() {
		n.ch = make(chan struct{})
		go n.run(s.ctx, s.hub)
	})
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *changeNotifier) run(ctx context.Context, h *hub) {
	for ctx.Err() == nil {
		sub := h.subscribe()
		func() {
			defer h.unsubscribe(sub)
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-sub.ch:
					n.mu.Lock()
					close(n.ch)
					n.ch = make(chan struct{})
					n.mu.Unlock()
					if !ok {
						return // dropped as slow: subscribe again
					}
				}
			}
		}()
	}
}

func (s *server) consulRoutes(mux *http.ServeMux) {
	s.consulIdx = newConsulIndexes()
	s.consulChanges = &changeNotifier{}
	mux.HandleFunc("GET /v1/agent/self", s.handleConsulSelf)
	mux.HandleFunc("GET /v1/catalog/services", s.consulBlocking(s.consulCatalogServices))
	mux.HandleFunc("GET /v1/catalog/service/{name}", s.consulBlocking(s.consulCatalogService))
	mux.HandleFunc("GET /v1/catalog/nodes", s.consulBlocking(s.consulCatalogNodes))
	mux.HandleFunc("GET /v1/health/service/{name}", s.consulBlocking(s.consulHealthService))
}

// consulQuery is the parsed query of a read.
type consulQuery struct {
	name     string
	tags     []string
	nodeMeta map[string]string
	passing  bool
}

// parseConsulQuery reads the parameters every endpoint shares; it writes
// the 400 and returns false on bad ones.
func parseConsulQuery(w http.ResponseWriter, r *http.Request) (consulQuery, uint64, time.Duration, bool) {
	q := r.URL.Query()
	cq := consulQuery{name: r.PathValue("name"), tags: q["tag"]}
	if _, ok := q[consulNoIndexFilter]; ok && q.Get(consulNoIndexFilter) != "" {
		writeError(w, http.StatusBadRequest, "filter expressions are not supported by this Consul-compatible API (use tag, node-meta, passing)")
		return cq, 0, 0, false
	}
	for _, nm := range q["node-meta"] {
		k, v, ok := strings.Cut(nm, ":")
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("node-meta %q: want key:value", nm))
			return cq, 0, 0, false
		}
		if cq.nodeMeta == nil {
			cq.nodeMeta = map[string]string{}
		}
		cq.nodeMeta[k] = v
	}
	if p, ok := q["passing"]; ok {
		switch strings.ToLower(p[0]) {
		case "", "1", "true":
			cq.passing = true
		case "0", "false":
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("passing=%q: want true or false", p[0]))
			return cq, 0, 0, false
		}
	}
	var index uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("index %q: want a non-negative integer", v))
			return cq, 0, 0, false
		}
		index = n
	}
	wait := consulDefaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			if n, err2 := strconv.ParseUint(v, 10, 32); err2 == nil { // seconds, as Consul also takes
				d, err = time.Duration(n)*time.Second, nil
			}
		}
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("wait %q: want a duration such as 30s or 120000ms", v))
			return cq, 0, 0, false
		}
		wait = min(d, consulMaxWait)
	}
	return cq, index, wait, true
}

// consulBlocking serves a read as a blocking query: with index > 0 it
// waits until the answer's index passes it, or the wait (plus up to a
// sixteenth of jitter) ends. Every answer carries X-Consul-Index.
func (s *server) consulBlocking(answer func(consulQuery) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cq, index, wait, ok := parseConsulQuery(w, r)
		if !ok {
			return
		}
		key := consulKey(r)
		var body []byte
		var idx uint64
		compute := func() {
			body, _ = json.Marshal(answer(cq)) // built of strings, numbers and maps
			idx = s.consulIdx.index(key, body)
		}
		if index == 0 || index > s.consulIdx.current() { // not ours (another agent, a restart): answer now
			compute()
		} else {
			if wait > 0 {
				wait += rand.N(wait/16 + 1)
			}
			rc := http.NewResponseController(w) // the server's 30 s timeouts are for ordinary requests
			rc.SetWriteDeadline(time.Now().Add(wait + 30*time.Second))
			rc.SetReadDeadline(time.Time{})
			deadline := time.NewTimer(wait)
			defer deadline.Stop()
		wait:
			for {
				changed := s.changed() // before computing: no change is missed
				compute()
				if idx > index {
					break
				}
				// An expiry is a record change too (its owner rewrites the
				// record), so changed covers it.
				done := false
				select {
				case <-changed:
				case <-deadline.C:
					done = true
				case <-r.Context().Done():
					return
				case <-s.ctx.Done():
					done = true
				}
				if done {
					compute()
					break wait
				}
			}
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
		h.Set("X-Consul-KnownLeader", "true")
		h.Set("X-Consul-LastContact", "0")
		h.Set("X-Consul-Effective-Consistency", "stale")
		w.Write(body)
	}
}

// consulKey is the query without the parameters of blocking and
// consistency, sorted.
func consulKey(r *http.Request) string {
	q := r.URL.Query()
	for _, p := range []string{"index", "wait", "stale", "consistent", "cached", "dc", "token", "near"} {
		q.Del(p)
	}
	return r.URL.Path + "?" + q.Encode() // Encode sorts by key
}

// datacenter is the cluster ID, Consul's datacenter.
func (s *server) datacenter() string {
	if s.cluster == "" {
		return "default"
	}
	return s.cluster
}

func (s *server) handleConsulSelf(w http.ResponseWriter, r *http.Request) {
	host, port, _ := net.SplitHostPort(s.node.Addr())
	p, _ := strconv.Atoi(port)
	writeJSON(w, http.StatusOK, map[string]any{
		"Config": map[string]any{"Datacenter": s.datacenter(), "NodeName": s.node.ID(), "NodeID": consulNodeID(s.node.ID()),
			"Server": false, "Version": "scuttlebutt"},
		"Member": map[string]any{"Name": s.node.ID(), "Addr": host, "Port": p, "Status": 1, "Tags": map[string]string{"role": "node"}},
		"Meta":   map[string]string{},
	})
}

// consulNodeID is a stable UUID-shaped ID of a node ID.
func consulNodeID(id string) string {
	h := sha256.Sum256([]byte(id))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// consulNodeOf returns the Consul node of a node ID (alive nodes only).
func (s *server) consulNodeOf(id, dc string, cache map[string]*consulNode) (*consulNode, bool) {
	if n, ok := cache[id]; ok {
		return n, n != nil
	}
	ni, ok := s.node.NodeInfo(id)
	if !ok || ni.Status != scuttlebutt.StatusAlive {
		cache[id] = nil
		return nil, false
	}
	host, _, _ := net.SplitHostPort(ni.Addr)
	n := &consulNode{ID: consulNodeID(id), Node: id, Address: host, Datacenter: dc,
		TaggedAddresses: map[string]string{"lan": host, "wan": host}, Meta: map[string]string{},
		CreateIndex: 1, ModifyIndex: 1}
	if role, ok := s.node.Lookup(id, roleKey); ok {
		n.Meta["role"] = role
	}
	cache[id] = n
	return n, true
}

func metaMatches(meta, want map[string]string) bool {
	for k, v := range want {
		if meta[k] != v {
			return false
		}
	}
	return true
}

func hasAllTags(tags, want []string) bool {
	for _, t := range want {
		if !hasTag(tags, t) {
			return false
		}
	}
	return true
}

// consulServiceID is the instance's Consul service ID: a registration's
// ID, or <container name>:<private port>/<proto> for a container's port.
func consulServiceID(in instanceView) string {
	if docker.IsRegistrationKey(in.Key) {
		return in.Name
	}
	return in.Name + ":" + strconv.Itoa(in.Private) + "/" + in.Proto
}

// consulStatus maps an instance's health onto Consul's statuses, leaving
// out maintenance (a check of its own): passing (healthy), warning
// (starting), critical (failing, unhealthy, expired, not running).
func consulStatus(in instanceView) string {
	switch {
	case in.Healthy:
		return consulPassing
	case in.State != docker.StateRunning || in.Expired:
		return consulCritical
	}
	status := in.Health
	if in.Check != nil {
		status = in.Check.Status
	}
	switch status {
	case docker.HealthHealthy, docker.HealthNone, "passing":
		if in.Check != nil && in.Health == docker.HealthUnhealthy {
			return consulCritical
		}
		return consulPassing // in maintenance, else it would be healthy
	case docker.HealthStarting:
		return consulWarning
	}
	return consulCritical
}

// consulEntry is one instance as Consul's health endpoint shows it.
func (s *server) consulEntry(in instanceView, n *consulNode) consulServiceEntry {
	id := consulServiceID(in)
	tags := in.Tags
	if tags == nil {
		tags = []string{}
	}
	meta := map[string]string{}
	for k, v := range in.Labels {
		meta[k] = v
	}
	svc := consulService{ID: id, Service: in.Service, Tags: tags, Meta: meta, Port: in.Port, Address: in.Host,
		Weights: consulWeights{Passing: 1, Warning: 1}, Datacenter: n.Datacenter, CreateIndex: 1, ModifyIndex: 1}
	serfOut := "Agent alive and reachable"
	checks := []consulCheck{{Node: n.Node, CheckID: consulSerfHealth, Name: "Serf Health Status", Status: consulPassing,
		Output: serfOut, Type: "", ServiceTags: []string{}}}
	output := in.Verdict
	if in.Check != nil && in.Check.Output != "" {
		output = in.Check.Output
	}
	checks = append(checks, consulCheck{Node: n.Node, CheckID: consulServiceCheck + id, Name: "Service '" + in.Service + "' check",
		Status: consulStatus(in), Output: output, ServiceID: id, ServiceName: in.Service, ServiceTags: tags, Type: "ttl"})
	if in.Maintenance != "" {
		nodeReason, nodeMaint := s.node.Lookup(in.Node, docker.NodeMaintKey)
		if nodeMaint {
			checks = append(checks, consulCheck{Node: n.Node, CheckID: consulNodeMaint, Name: "Node Maintenance Mode",
				Status: consulCritical, Notes: nodeReason, ServiceTags: []string{}, Type: "maintenance"})
		}
		if !nodeMaint || in.Maintenance != nodeReason && !(nodeReason == "" && in.Maintenance == docker.DefaultMaintReason) {
			checks = append(checks, consulCheck{Node: n.Node, CheckID: consulServiceMaint + id, Name: "Service Maintenance Mode",
				Status: consulCritical, Notes: in.Maintenance, ServiceID: id, ServiceName: in.Service, ServiceTags: tags, Type: "maintenance"})
		}
	}
	return consulServiceEntry{Node: *n, Service: svc, Checks: checks}
}

// consulEntries returns the entries of service name matching q.
func (s *server) consulEntries(q consulQuery) []consulServiceEntry {
	dc := s.datacenter()
	nodes := map[string]*consulNode{}
	out := []consulServiceEntry{}
	for _, in := range s.services.get().byName[q.name] {
		if !hasAllTags(in.Tags, q.tags) || q.passing && !in.Healthy {
			continue
		}
		n, ok := s.consulNodeOf(in.Node, dc, nodes)
		if !ok || !metaMatches(n.Meta, q.nodeMeta) {
			continue
		}
		out = append(out, s.consulEntry(in, n))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node.Node != out[j].Node.Node {
			return out[i].Node.Node < out[j].Node.Node
		}
		return out[i].Service.ID < out[j].Service.ID
	})
	return out
}

func (s *server) consulHealthService(q consulQuery) any { return s.consulEntries(q) }

func (s *server) consulCatalogService(q consulQuery) any {
	q.passing = false // the catalog lists every instance
	out := []consulCatalogService{}
	for _, e := range s.consulEntries(q) {
		out = append(out, consulCatalogService{ID: e.Node.ID, Node: e.Node.Node, Address: e.Node.Address, Datacenter: e.Node.Datacenter,
			TaggedAddresses: e.Node.TaggedAddresses, NodeMeta: e.Node.Meta, ServiceID: e.Service.ID, ServiceName: e.Service.Service,
			ServiceAddress: e.Service.Address, ServiceTags: e.Service.Tags, ServiceMeta: e.Service.Meta, ServicePort: e.Service.Port,
			ServiceWeights: e.Service.Weights, CreateIndex: 1, ModifyIndex: 1})
	}
	return out
}

func (s *server) consulCatalogServices(q consulQuery) any {
	dc := s.datacenter()
	nodes := map[string]*consulNode{}
	snap := s.services.get()
	out := map[string][]string{}
	for _, name := range snap.names {
		var tags []string
		found := false
		for _, in := range snap.byName[name] {
			if n, ok := s.consulNodeOf(in.Node, dc, nodes); !ok || !metaMatches(n.Meta, q.nodeMeta) {
				continue
			}
			found = true
			for _, t := range in.Tags {
				if !hasTag(tags, t) {
					tags = append(tags, t)
				}
			}
		}
		if found {
			sort.Strings(tags)
			if tags == nil {
				tags = []string{}
			}
			out[name] = tags
		}
	}
	return out
}

func (s *server) consulCatalogNodes(q consulQuery) any {
	dc := s.datacenter()
	cache := map[string]*consulNode{}
	out := []consulNode{}
	for _, ni := range s.node.Nodes() {
		if n, ok := s.consulNodeOf(ni.ID, dc, cache); ok && metaMatches(n.Meta, q.nodeMeta) {
			out = append(out, *n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
