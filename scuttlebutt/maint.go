package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// This file is maintenance (draining): this node's services, or one
// service ID of this node, put in maintenance through the API (`scuttlebutt
// maint`). The state lives in this node's keys maint/node and
// maint/service/<ID> (docker.MaintPrefix), which the services view reads:
// an instance in maintenance stays visible with the verdict "maintenance"
// and leaves every healthy answer. Those keys last as long as the node's
// state, or, with -data-dir, across restarts (maint_store.go); a
// registration's "maintenance" and the scuttlebutt.maintenance label
// survive a restart too.

// maintView is this node's maintenance, as GET /v1/maintenance shows it.
type maintView struct {
	Node     string            `json:"node"`
	All      *string           `json:"all"`      // reason of the node-wide maintenance; null: none
	Services map[string]string `json:"services"` // reason by service ID
	// Instances of this node in maintenance, from whatever source (keys,
	// registrations, labels).
	Instances []instanceView `json:"instances"`
}

// maintRequest is the optional body of PUT /v1/maintenance[/{id}].
type maintRequest struct {
	Reason string `json:"reason"`
}

func (s *server) maintRoutes(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	mux.HandleFunc("GET /v1/maintenance", s.handleMaintGet)
	for pattern, h := range map[string]http.HandlerFunc{
		"PUT /v1/maintenance":         s.handleMaintSet,
		"PUT /v1/maintenance/{id}":    s.handleMaintSet,
		"DELETE /v1/maintenance":      s.handleMaintClear,
		"DELETE /v1/maintenance/{id}": s.handleMaintClear,
		// Consul's: ?enable=true|false&reason=...
		"PUT /v1/agent/maintenance":              s.handleConsulMaint,
		"PUT /v1/agent/service/maintenance/{id}": s.handleConsulMaint,
	} {
		mux.Handle(pattern, guard(h))
	}
}

func (s *server) maintView() maintView {
	v := maintView{Node: s.node.ID(), Services: map[string]string{}, Instances: []instanceView{}}
	state, _ := s.node.State(s.node.ID())
	for k, val := range state {
		switch {
		case k == docker.NodeMaintKey:
			v.All = &val
		case strings.HasPrefix(k, docker.MaintKey("")):
			v.Services[strings.TrimPrefix(k, docker.MaintKey(""))] = val
		}
	}
	snap := s.services.get()
	for _, name := range snap.names {
		for _, in := range snap.byName[name] {
			if in.Node == s.node.ID() && in.Maintenance != "" {
				v.Instances = append(v.Instances, in)
			}
		}
	}
	sort.Slice(v.Instances, func(i, j int) bool { return v.Instances[i].Key < v.Instances[j].Key })
	return v
}

func (s *server) handleMaintGet(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.maintView())
}

// hasLocalInstance tells whether this node publishes an instance whose
// service ID (record name) is id.
func (s *server) hasLocalInstance(id string) bool {
	state, _ := s.node.State(s.node.ID())
	for k, v := range state {
		if !strings.HasPrefix(k, docker.KeyPrefix) {
			continue
		}
		if rec, err := docker.DecodeRecord(v); err == nil && rec.Name == id {
			return true
		}
	}
	return false
}

// setMaint enables or disables maintenance of id (every service when
// empty), writing its answer.
func (s *server) setMaint(w http.ResponseWriter, r *http.Request, id string, enable bool, reason string) {
	key := docker.NodeMaintKey
	if id != "" {
		key = docker.MaintKey(id)
		if len(key) > 256 || strings.ContainsAny(id, "/ \t\n") {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("service ID %q: want at most 64 bytes of A-Z a-z 0-9 . _ -", id))
			return
		}
		if enable && !s.hasLocalInstance(id) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("this node publishes no instance with service ID %q (a registration's ID, or a container's name)", id))
			return
		}
	}
	if len(reason) > docker.MaxMaintReason {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("reason is %d bytes, the limit is %d", len(reason), docker.MaxMaintReason))
		return
	}
	var err error
	if enable {
		if reason == "" {
			reason = docker.DefaultMaintReason
		}
		err = s.node.UpdateLocal(key, reason)
		s.log.Info("maintenance enabled", "service_id", id, "reason", reason, "remote", r.RemoteAddr)
	} else if _, ok := s.node.Lookup(s.node.ID(), key); ok {
		err = s.node.DeleteLocal(key)
		s.log.Info("maintenance disabled", "service_id", id, "remote", r.RemoteAddr)
	}
	if err != nil {
		nodeError(w, err)
		return
	}
	if s.maint != nil {
		state, _ := s.node.State(s.node.ID())
		if err := s.maint.save(state); err != nil {
			s.log.Error("cannot keep the maintenance in -data-dir: it lasts until the agent restarts", "file", s.maint.path, "err", err)
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("maintenance set, but not kept in -data-dir (%s): %v", s.maint.path, err))
			return
		}
	}
	writeJSON(w, http.StatusOK, s.maintView())
}

func (s *server) handleMaintSet(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxBodySlack)
	if !ok {
		return
	}
	var req maintRequest
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "malformed JSON body: want {\"reason\": \"...\"}: "+err.Error())
			return
		}
	}
	s.setMaint(w, r, r.PathValue("id"), true, req.Reason)
}

func (s *server) handleMaintClear(w http.ResponseWriter, r *http.Request) {
	s.setMaint(w, r, r.PathValue("id"), false, "")
}

// handleConsulMaint is Consul's PUT /v1/agent/maintenance and
// /v1/agent/service/maintenance/{id}: ?enable=true|false&reason=.
func (s *server) handleConsulMaint(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var enable bool
	switch q.Get("enable") {
	case "true":
		enable = true
	case "false":
	default:
		writeError(w, http.StatusBadRequest, "missing or bad enable: want enable=true or enable=false")
		return
	}
	s.setMaint(w, r, r.PathValue("id"), enable, q.Get("reason"))
}

// runMaint is `scuttlebutt maint`.
func runMaint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("maint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &cli{stdout: stdout, stderr: stderr, name: "maint"}
	c.flags(fs)
	enable := fs.Bool("enable", false, "put the services of this node (or -service-id) in maintenance")
	disable := fs.Bool("disable", false, "take them out of maintenance")
	id := fs.String("service-id", "", "service `ID`: a registration's ID or a container's name (default: every service of the agent's node)")
	reason := fs.String("reason", "", "`text` shown with the instances in maintenance")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: scuttlebutt maint -enable|-disable [-service-id ID] [-reason TEXT] [flags]
       scuttlebutt maint          (shows this node's maintenance)

Puts services of the agent's node in maintenance (draining): they stay
visible with status "maintenance" and leave every healthy answer (hosts, DNS,
Prometheus discovery, the Consul-compatible API). Set this way it lasts
until -disable or the agent's restart; scuttlebutt watch -maintenance and the
scuttlebutt.maintenance label survive restarts.

Flags:
`)
		fs.PrintDefaults()
	}
	rest, err := parseFlags(fs, args, cliEnv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return c.usageErr("%v", err)
	}
	if len(rest) > 0 || *enable && *disable || (*id != "" || *reason != "") && !*enable && !*disable {
		return c.usageErr("want -enable or -disable (with -service-id, -reason), or nothing to show; no argument")
	}
	path := "/v1/maintenance"
	if *id != "" {
		path += "/" + url.PathEscape(*id)
	}
	var v maintView
	var raw []byte
	switch {
	case *enable:
		raw, err = c.do("PUT", path, nil, maintRequest{Reason: *reason}, &v)
	case *disable:
		raw, err = c.do("DELETE", path, nil, nil, &v)
	default:
		raw, err = c.do("GET", "/v1/maintenance", nil, nil, &v)
	}
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	if v.All != nil {
		fmt.Fprintf(stdout, "node %s: every service in maintenance: %s\n", v.Node, *v.All)
	}
	for _, in := range v.Instances {
		fmt.Fprintf(stdout, "%s %s (%s): maintenance: %s\n", in.Service, in.Name, in.Addr, in.Maintenance)
	}
	if v.All == nil && len(v.Instances) == 0 {
		fmt.Fprintf(stdout, "node %s: no service in maintenance\n", v.Node)
	}
	return exitOK
}
