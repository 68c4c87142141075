package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/lease"
)

// This file holds the start-up leases the agent holds on behalf of
// `scuttlebutt acquire-lease` (package lease does the rule). The agent keeps
// each request until it is released: by `release-lease`, when the same
// service ID's health first passes (unless hold_until_healthy is false),
// when the maximum hold time runs out, or, while still waiting, when no
// client has polled it for abandonAfter. A request outlives the CLI process
// that made it: ServiceMonitor's systemd unit runs acquire-lease in
// ExecStartPre, then starts the service.

// Lease timings of the agent.
const (
	defaultMaxHold = 5 * time.Minute
	abandonAfter   = 30 * time.Second // a waiting request nobody polls is withdrawn
	keepEnded      = 5 * time.Minute  // an ended request is still shown (to a late poll)
	maxLeaseWait   = 60 * time.Second // longest long poll
	leaseTick      = 200 * time.Millisecond
)

// Lease states as the API shows them.
const (
	leaseWaiting  = "waiting"
	leaseHeld     = "held"
	leaseReleased = "released"
)

// leaseManager holds this agent's lease requests.
type leaseManager struct {
	leases *lease.Leases
	node   clusterNode
	log    *slog.Logger
	ctx    context.Context

	mu       sync.Mutex
	reqs     map[string]*leaseRequest // by label + "/" + service ID
	sweeping bool
}

// leaseRequest is one request this agent made for a client.
type leaseRequest struct {
	mine             lease.Request
	requested        time.Time // monotonic
	holdUntilHealthy bool
	maxHold          time.Duration

	// guarded by leaseManager.mu
	state     string
	heldSince time.Time
	endedAt   time.Time
	endReason string
	lastPoll  time.Time
	polling   int                // long polls in progress
	changed   chan struct{}      // closed (and replaced) at every change of state
	cancel    context.CancelFunc // ends the waiting or holding goroutine
}

// newLeaseManager returns the lease manager of an agent, which
// acknowledges the cluster's lease requests (as every node must) until ctx
// ends.
func newLeaseManager(n clusterNode, opt lease.Options, log *slog.Logger, ctx context.Context) *leaseManager {
	m := &leaseManager{leases: lease.New(n, opt), node: n, log: log, ctx: ctx, reqs: map[string]*leaseRequest{}}
	go m.leases.Run(ctx)
	return m
}

// leaseFlags are the agent's flags of leases.
type leaseFlags struct {
	spread, skew time.Duration
}

func (f *leaseFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.spread, "lease-spread", 0, "ignored (accepted for earlier command lines): a lease is granted once every live node acknowledges it")
	fs.DurationVar(&f.skew, "lease-skew", 0, "ignored (accepted for earlier command lines): no lease decision compares clocks")
}

func (f *leaseFlags) check() error {
	if f.spread < 0 || f.skew < 0 {
		return fmt.Errorf("-lease-spread %v, -lease-skew %v: want durations of zero or more, such as 4s", f.spread, f.skew)
	}
	return nil
}

// options returns the options of the agent's leases for a gossip
// interval: the cluster's state is looked at every round (at least every
// 100 ms). -lease-spread and -lease-skew no longer count.
func (f leaseFlags) options(gossipInterval time.Duration) lease.Options {
	return lease.Options{Poll: max(gossipInterval, 100*time.Millisecond)}
}

// leaseView is one of this agent's requests as the API shows it.
type leaseView struct {
	Label            string       `json:"label"`
	ServiceID        string       `json:"service_id"`
	Node             string       `json:"node"`
	State            string       `json:"state"` // waiting, held or released
	RequestedAt      time.Time    `json:"requested_at"`
	HeldSince        *time.Time   `json:"held_since,omitempty"`
	EndedAt          *time.Time   `json:"ended_at,omitempty"`
	EndReason        string       `json:"end_reason,omitempty"`
	HoldUntilHealthy bool         `json:"hold_until_healthy"`
	MaxHold          string       `json:"max_hold"`
	Settle           string       `json:"settle"`   // always "0s": no request waits for clocks (kept for clients of earlier versions)
	Position         int          `json:"position"` // in the label's queue: 0 holds or is next; -1 not in it
	Queue            []queueEntry `json:"queue"`
}

// queueEntry is one request of a label's queue.
type queueEntry struct {
	ServiceID   string    `json:"service_id"`
	Node        string    `json:"node"`
	RequestedAt time.Time `json:"requested_at"`
}

func toQueue(q []lease.Request) []queueEntry {
	out := make([]queueEntry, len(q))
	for i, r := range q {
		out[i] = queueEntry{ServiceID: r.ServiceID, Node: r.Node, RequestedAt: r.At.UTC()}
	}
	return out
}

// viewLocked returns the view of a request; m.mu is held.
func (m *leaseManager) viewLocked(r *leaseRequest) leaseView {
	q := m.leases.Requests(r.mine.Label)
	v := leaseView{
		Label: r.mine.Label, ServiceID: r.mine.ServiceID, Node: r.mine.Node, State: r.state,
		RequestedAt: r.mine.At.UTC(), EndReason: r.endReason, HoldUntilHealthy: r.holdUntilHealthy,
		MaxHold: r.maxHold.String(), Settle: m.leases.Settle().String(), Position: -1, Queue: toQueue(q),
	}
	if !r.heldSince.IsZero() {
		t := wallOf(m.node, r.heldSince).UTC()
		v.HeldSince = &t
	}
	if !r.endedAt.IsZero() {
		t := wallOf(m.node, r.endedAt).UTC()
		v.EndedAt = &t
	}
	for i, e := range q {
		if e.Node == r.mine.Node && e.ServiceID == r.mine.ServiceID {
			v.Position = i
		}
	}
	return v
}

func leaseKey(label, id string) string { return label + "/" + id }

// acquire makes a request (or returns the one in progress: a retried
// acquire keeps its place) and starts waiting for the lease.
func (m *leaseManager) acquire(label, id string, holdUntilHealthy bool, maxHold time.Duration) (leaseView, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := leaseKey(label, id)
	if r := m.reqs[k]; r != nil && r.state != leaseReleased {
		r.lastPoll = time.Now()
		return m.viewLocked(r), false, nil
	}
	mine, err := m.leases.Request(label, id)
	if err != nil {
		return leaseView{}, false, err
	}
	ctx, cancel := context.WithCancel(m.ctx)
	r := &leaseRequest{mine: mine, requested: time.Now(), holdUntilHealthy: holdUntilHealthy, maxHold: maxHold, state: leaseWaiting,
		lastPoll: time.Now(), changed: make(chan struct{}), cancel: cancel}
	m.reqs[k] = r
	m.log.Info("lease requested", "label", label, "service_id", id, "ticket", mine.Ticket)
	go m.run(ctx, r)
	if !m.sweeping {
		m.sweeping = true
		go m.sweep()
	}
	return m.viewLocked(r), true, nil
}

// run waits for the lease, then holds it until a release condition.
func (m *leaseManager) run(ctx context.Context, r *leaseRequest) {
	if err := m.leases.Wait(ctx, r.mine); err != nil {
		return // ended by release, abandonment or shutdown
	}
	m.mu.Lock()
	if r.state != leaseWaiting {
		m.mu.Unlock()
		return
	}
	r.state, r.heldSince = leaseHeld, time.Now()
	m.notifyLocked(r)
	m.mu.Unlock()
	m.log.Info("lease held", "label", r.mine.Label, "service_id", r.mine.ServiceID,
		"waited", time.Since(r.requested).Round(time.Millisecond), "hold_until_healthy", r.holdUntilHealthy, "max_hold", r.maxHold)
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch {
		case r.holdUntilHealthy && m.serviceHealthy(r.mine.Label, r.mine.ServiceID):
			m.release(r.mine.Label, r.mine.ServiceID, "the service passed its health check")
			return
		case r.maxHold > 0 && time.Since(r.heldSince) >= r.maxHold:
			m.release(r.mine.Label, r.mine.ServiceID, fmt.Sprintf("held for the maximum hold time (%v)", r.maxHold))
			return
		}
	}
}

// serviceHealthy tells whether an instance of label with service ID id
// (a registration's ID, or a container's name) is healthy on a live node.
func (m *leaseManager) serviceHealthy(label, id string) bool {
	for _, in := range docker.Instances(m.node, label, true) {
		if in.Name == id {
			return true
		}
	}
	return false
}

// notifyLocked wakes the long polls of r.
func (m *leaseManager) notifyLocked(r *leaseRequest) {
	close(r.changed)
	r.changed = make(chan struct{})
}

// release ends a request: it withdraws it from the cluster, so the lease
// passes to the next one. It returns the request's view, false if this
// agent has none.
func (m *leaseManager) release(label, id, why string) (leaseView, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.reqs[leaseKey(label, id)]
	if r == nil {
		return leaseView{}, false, nil
	}
	err := m.endLocked(r, why)
	return m.viewLocked(r), true, err
}

func (m *leaseManager) endLocked(r *leaseRequest, why string) error {
	if r.state == leaseReleased {
		return nil
	}
	r.cancel()
	if err := m.leases.Release(r.mine.Label, r.mine.ServiceID); err != nil {
		return err
	}
	was := r.state
	r.state, r.endedAt, r.endReason = leaseReleased, time.Now(), why
	m.notifyLocked(r)
	m.log.Info("lease released", "label", r.mine.Label, "service_id", r.mine.ServiceID, "was", was, "why", why)
	return nil
}

// sweep withdraws waiting requests nobody polls and forgets ended ones,
// until no request is left or the agent stops.
func (m *leaseManager) sweep() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		now := time.Now()
		for k, r := range m.reqs {
			switch {
			case r.state == leaseWaiting && r.polling == 0 && now.Sub(r.lastPoll) >= abandonAfter:
				m.endLocked(r, fmt.Sprintf("abandoned: no client waited for it for %v", abandonAfter))
			case r.state == leaseReleased && now.Sub(r.endedAt) >= keepEnded:
				delete(m.reqs, k)
			}
		}
		if len(m.reqs) == 0 {
			m.sweeping = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// poll returns the view of a request, waiting up to wait while it waits
// for the lease. False: this agent has no such request.
func (m *leaseManager) poll(ctx context.Context, label, id string, wait time.Duration) (leaseView, bool) {
	m.mu.Lock()
	r := m.reqs[leaseKey(label, id)]
	if r == nil {
		m.mu.Unlock()
		return leaseView{}, false
	}
	r.polling++
	r.lastPoll = time.Now()
	defer func() {
		m.mu.Lock()
		r.polling--
		r.lastPoll = time.Now()
		m.mu.Unlock()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for r.state == leaseWaiting && wait > 0 {
		ch := r.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			wait = 0
		case <-ctx.Done():
			wait = 0
		}
		m.mu.Lock()
	}
	v := m.viewLocked(r)
	m.mu.Unlock()
	return v, true
}

// list returns this agent's requests, and the cluster's queues by label.
func (m *leaseManager) list() ([]leaseView, map[string][]queueEntry) {
	m.mu.Lock()
	local := make([]leaseView, 0, len(m.reqs))
	for _, r := range m.reqs {
		local = append(local, m.viewLocked(r))
	}
	m.mu.Unlock()
	sort.Slice(local, func(i, j int) bool {
		return leaseKey(local[i].Label, local[i].ServiceID) < leaseKey(local[j].Label, local[j].ServiceID)
	})
	queues := map[string][]queueEntry{}
	for label, q := range m.leases.All() {
		queues[label] = toQueue(q)
	}
	return local, queues
}

// leaseRequestBody is the body of POST /v1/leases/{label}/{id}.
type leaseRequestBody struct {
	HoldUntilHealthy *bool  `json:"hold_until_healthy"` // default true
	MaxHold          string `json:"max_hold"`           // Go duration; default 5m; "0" none
}

func (s *server) handleLeaseAcquire(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxBodySlack)
	if !ok {
		return
	}
	var req leaseRequestBody
	if len(body) > 0 {
		if err := decodeStrict(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "malformed JSON body: want {\"hold_until_healthy\": true, \"max_hold\": \"5m\"}: "+err.Error())
			return
		}
	}
	hold := req.HoldUntilHealthy == nil || *req.HoldUntilHealthy
	maxHold := defaultMaxHold
	if req.MaxHold != "" {
		d, err := time.ParseDuration(req.MaxHold)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("max_hold %q: want a duration such as 5m (0: no limit)", req.MaxHold))
			return
		}
		maxHold = d
	}
	v, created, err := s.leases.acquire(r.PathValue("label"), r.PathValue("id"), hold, maxHold)
	if errors.Is(err, lease.ErrBadName) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		nodeError(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, v)
}

func (s *server) handleLeaseGet(w http.ResponseWriter, r *http.Request) {
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("wait=%q: want a duration such as 20s", q))
			return
		}
		wait = min(d, maxLeaseWait)
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 10*time.Second))
	}
	label, id := r.PathValue("label"), r.PathValue("id")
	v, ok := s.leases.poll(r.Context(), label, id, wait)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("this agent has no lease request of %q for %q", id, label))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) handleLeaseRelease(w http.ResponseWriter, r *http.Request) {
	label, id := r.PathValue("label"), r.PathValue("id")
	v, ok, err := s.leases.release(label, id, "released by request (release-lease, or acquire-lease giving up)")
	if err != nil {
		nodeError(w, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("this agent has no lease request of %q for %q", id, label))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) handleLeases(w http.ResponseWriter, r *http.Request) {
	local, queues := s.leases.list()
	writeJSON(w, http.StatusOK, map[string]any{"local": local, "queues": queues})
}

func (s *server) handleLeaseQueue(w http.ResponseWriter, r *http.Request) {
	label := r.PathValue("label")
	writeJSON(w, http.StatusOK, map[string]any{"label": label, "queue": toQueue(s.leases.leases.Requests(label))})
}

// healthRoutes adds the read endpoints of registrations and leases.
func (s *server) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/registrations", s.handleRegistrations)
	mux.HandleFunc("GET /v1/leases", s.handleLeases)
	mux.HandleFunc("GET /v1/leases/{label}", s.handleLeaseQueue)
	mux.HandleFunc("GET /v1/leases/{label}/{id}", s.handleLeaseGet)
}

// healthWriteRoutes adds the write endpoints of registrations and leases,
// behind guard (the token rules).
func (s *server) healthWriteRoutes(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	for pattern, h := range map[string]http.HandlerFunc{
		"PUT /v1/registrations/{service}/{id}":    s.handleRegistrationPut,
		"DELETE /v1/registrations/{service}/{id}": s.handleRegistrationDelete,
		"POST /v1/leases/{label}/{id}":            s.handleLeaseAcquire,
		"DELETE /v1/leases/{label}/{id}":          s.handleLeaseRelease,
	} {
		mux.Handle(pattern, guard(h))
	}
}
