package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// This file holds registrations: services that a watcher (`scuttlebutt
// watch`) registers with this agent over the HTTP API and keeps reporting
// the checks of. The agent publishes each as a record under
// svc/<service>/<service ID> (docker.Publication: written when the verdict
// changes and every third of the TTL), and withdraws it when the watcher
// says so or stops reporting for a whole TTL.

// checkView is a record's check as the API shows it.
type checkView struct {
	Status  string     `json:"status"` // passing, failing or starting
	Checked *time.Time `json:"checked,omitempty"`
	Output  string     `json:"output,omitempty"`
}

// addCheck fills the check and expiry of an instance view from its record.
func addCheck(v *instanceView, r docker.Record) {
	if r.Check != nil {
		v.Check = &checkView{Status: r.Check.Status, Output: r.Check.Output}
		if r.Check.At != 0 {
			at := time.UnixMilli(r.Check.At).UTC()
			v.Check.Checked = &at
		}
	}
	if r.Expires != 0 {
		exp := time.UnixMilli(r.Expires).UTC()
		v.Expires = &exp
	}
}

// registrationRequest is the body of PUT /v1/registrations/{service}/{id}:
// the service, and the result of the last check (none at the first call).
type registrationRequest struct {
	Host  string          `json:"host"`
	Port  int             `json:"port"`
	Proto string          `json:"proto"`
	Tags  []string        `json:"tags"`
	Info  json.RawMessage `json:"info"`
	TTL   string          `json:"ttl"` // Go duration; default docker.DefaultTTL
	Check *reportedCheck  `json:"check"`
	// Maintenance is a reason: the instance is in maintenance while its
	// registration says so (maint.go); empty: it is not.
	Maintenance string `json:"maintenance,omitempty"`
}

// reportedCheck is a watcher's last check.
type reportedCheck struct {
	Status  string    `json:"status"`            // passing, failing or starting: the verdict after this check
	Checked time.Time `json:"checked,omitzero"`  // when it ran; zero: no check yet
	Output  string    `json:"output,omitempty"`  // its output
	Result  string    `json:"result,omitempty"`  // pass, fail or timeout; empty: not a check (the registration itself)
	Latency float64   `json:"latency,omitempty"` // its duration, in seconds
}

// registrationAnswer answers a PUT.
type registrationAnswer struct {
	Key     string        `json:"key"`
	Written bool          `json:"written"` // the record was (re)written to the cluster by this call
	Record  docker.Record `json:"record"`
}

// registrationView is one registration in GET /v1/registrations.
type registrationView struct {
	Service    string        `json:"service"`
	ID         string        `json:"id"`
	Key        string        `json:"key"`
	TTL        string        `json:"ttl"`
	LastReport time.Time     `json:"last_report"`
	Record     docker.Record `json:"record"`
}

// registration is one registered service.
type registration struct {
	reg    docker.Registration
	pub    *docker.Publication
	last   time.Time // last report
	record docker.Record
}

// registrations holds this agent's registrations.
type registrations struct {
	pub      docker.Publisher
	maxValue int
	log      *slog.Logger
	ctx      context.Context // ends the sweeper

	mu       sync.Mutex
	regs     map[string]*registration // by key
	sweeping bool
}

func newRegistrations(pub docker.Publisher, maxValue int, log *slog.Logger, ctx context.Context) *registrations {
	return &registrations{pub: pub, maxValue: maxValue, log: log, ctx: ctx, regs: map[string]*registration{}}
}

// report registers reg (or changes it) and takes the result of its last
// check.
func (r *registrations) report(reg docker.Registration, ttl time.Duration, res health.Result) (registrationAnswer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := reg.Key()
	cur := r.regs[key]
	if cur == nil || !sameRegistration(cur.reg, reg) || cur.pub.TTL() != ttl {
		p, err := docker.NewPublication(r.pub, reg, docker.PublishOptions{TTL: ttl, MaxValueSize: r.maxValue})
		if err != nil {
			return registrationAnswer{}, err
		}
		if cur == nil {
			r.log.Info("service registered", "service", reg.Service, "id", reg.ID, "addr", net.JoinHostPort(reg.Host, strconv.Itoa(reg.Port)), "ttl", ttl)
		}
		if cur != nil {
			cur.pub.Stop() // replaced: the new one expires the record
		}
		cur = &registration{reg: reg, pub: p}
	}
	written, rec, err := cur.pub.Report(res)
	if err != nil {
		return registrationAnswer{}, err
	}
	if old := r.regs[key]; old != nil && old.record.Check != nil && rec.Check != nil && old.record.Check.Status != rec.Check.Status {
		r.log.Info("service health changed", "service", reg.Service, "id", reg.ID, "from", old.record.Check.Status, "to", rec.Check.Status, "output", rec.Check.Output)
	}
	cur.last, cur.record = time.Now(), rec
	r.regs[key] = cur
	if !r.sweeping {
		r.sweeping = true
		go r.sweep()
	}
	return registrationAnswer{Key: key, Written: written, Record: rec}, nil
}

// sameRegistration tells whether two registrations publish the same record
// (but for the verdict).
func sameRegistration(a, b docker.Registration) bool {
	return a.Service == b.Service && a.ID == b.ID && a.Host == b.Host && a.Port == b.Port && a.Proto == b.Proto &&
		slices.Equal(a.Tags, b.Tags) && bytes.Equal(a.Info, b.Info) && a.Maint == b.Maint
}

// withdraw deletes a registration; false if there was none.
func (r *registrations) withdraw(key, why string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.withdrawLocked(key, why)
}

func (r *registrations) withdrawLocked(key, why string) (bool, error) {
	cur := r.regs[key]
	if cur == nil {
		return false, nil
	}
	if err := cur.pub.Withdraw(); err != nil {
		return true, err
	}
	delete(r.regs, key)
	r.log.Info("service withdrawn", "service", cur.reg.Service, "id", cur.reg.ID, "why", why)
	return true, nil
}

// sweep withdraws registrations whose watcher stopped reporting for a whole
// TTL, until none is left or the agent stops.
func (r *registrations) sweep() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		now := time.Now()
		for key, cur := range r.regs {
			if now.Sub(cur.last) >= cur.pub.TTL() {
				r.withdrawLocked(key, fmt.Sprintf("no report from its watcher for %v (the TTL)", cur.pub.TTL()))
			}
		}
		if len(r.regs) == 0 {
			r.sweeping = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// list returns the registrations by key.
func (r *registrations) list() []registrationView {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]registrationView, 0, len(r.regs))
	for key, cur := range r.regs {
		out = append(out, registrationView{Service: cur.reg.Service, ID: cur.reg.ID, Key: key,
			TTL: cur.pub.TTL().String(), LastReport: wallOf(r.pub, cur.last).UTC(), Record: cur.record})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// parsedRegistration is a checked PUT body.
type parsedRegistration struct {
	reg    docker.Registration
	ttl    time.Duration
	res    health.Result // the verdict after the reported check
	result string        // of the reported check: pass, fail, timeout; "": none
}

// parseRegistration checks a PUT body.
func parseRegistration(service, id string, body []byte) (parsedRegistration, error) {
	var req registrationRequest
	if err := decodeStrict(body, &req); err != nil {
		return parsedRegistration{}, fmt.Errorf("malformed JSON body: %v", err)
	}
	reg := docker.Registration{Service: service, ID: id, Host: req.Host, Port: req.Port, Proto: req.Proto, Tags: req.Tags, Info: req.Info,
		Maint: req.Maintenance}
	if string(reg.Info) == "null" {
		reg.Info = nil
	}
	if len(reg.Info) > 0 && reg.Info[0] != '{' {
		return parsedRegistration{}, fmt.Errorf("info %s: want a JSON object, such as {\"http_port\": 9200}", reg.Info)
	}
	if err := reg.Validate(); err != nil {
		return parsedRegistration{}, err
	}
	ttl := docker.DefaultTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < docker.MinTTL || d > maxRegistrationTTL {
			return parsedRegistration{}, fmt.Errorf("ttl %q: want a duration from %v to %v, such as 30s", req.TTL, docker.MinTTL, maxRegistrationTTL)
		}
		ttl = d
	}
	res := health.Result{Status: health.Starting}
	if c := req.Check; c != nil {
		switch health.Status(c.Status) {
		case health.Passing, health.Failing, health.Starting:
		default:
			return parsedRegistration{}, fmt.Errorf("check.status %q: want passing, failing or starting", c.Status)
		}
		switch c.Result {
		case "", "pass", "fail", "timeout":
		default:
			return parsedRegistration{}, fmt.Errorf("check.result %q: want pass, fail or timeout", c.Result)
		}
		if c.Latency < 0 || c.Latency > 3600 {
			return parsedRegistration{}, fmt.Errorf("check.latency %v: want seconds from 0 to 3600", c.Latency)
		}
		res = health.Result{Status: health.Status(c.Status), LastCheck: c.Checked, Output: health.Trim(c.Output, health.MaxOutput),
			OK: c.Result == "pass", TimedOut: c.Result == "timeout", Latency: time.Duration(c.Latency * float64(time.Second))}
	}
	p := parsedRegistration{reg: reg, ttl: ttl, res: res}
	if req.Check != nil {
		p.result = req.Check.Result
	}
	return p, nil
}

func (s *server) handleRegistrationPut(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, int64(6*s.maxValue+maxBodySlack))
	if !ok {
		return
	}
	p, err := parseRegistration(r.PathValue("service"), r.PathValue("id"), body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if p.result != "" {
		s.checks.observe("watch", p.result, p.res.Latency)
	}
	ans, err := s.registrations.report(p.reg, p.ttl, p.res)
	if errors.Is(err, docker.ErrRecordTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	if err != nil {
		nodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *server) handleRegistrationDelete(w http.ResponseWriter, r *http.Request) {
	key := docker.Registration{Service: r.PathValue("service"), ID: r.PathValue("id")}.Key()
	found, err := s.registrations.withdraw(key, "withdrawn by its watcher")
	if err != nil {
		nodeError(w, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no registration %q on this agent", key))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleRegistrations(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"registrations": s.registrations.list()})
}
