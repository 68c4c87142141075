// Package lease gives start-up leases over gossip, as ServiceMonitor's
// acquire-lease: the instances of a clustered service take turns to start,
// one at a time.
//
// There is no consensus over gossip, so a lease is a rule every node
// applies to what it sees, with votes as ordinary keys:
//
//   - A candidate publishes a request, a key of its own node,
//     "lease/<label>/<service ID>" = its ticket and epoch (and the time it
//     asked, by its node's clock, for people only). The ticket is one more
//     than the highest ticket its node knows for the label (a Lamport
//     clock): a candidate that asks after it has seen others queues behind
//     them, whatever its clock says. Requests are ordered by (ticket, node
//     ID, service ID).
//   - Every node acknowledges one request per label, with a key of its own,
//     "lease/<label>" = the request (and its epoch) it acknowledges. It
//     keeps its acknowledgement while that request exists at that epoch;
//     then it acknowledges the first request it knows.
//   - A candidate holds the lease once every node alive in its view
//     acknowledges its request at its current epoch. A candidate that does
//     not hold it yet, and sees a live node acknowledge an earlier request
//     while some node acknowledges its own, yields: it raises its epoch,
//     which frees those acknowledgements for the earlier request. A holder
//     never yields. It releases by deleting its request.
//
// What is guaranteed: at most one candidate holds a label at a time while
// the cluster is connected (no node is falsely declared dead, and any two
// nodes' views of the live nodes share a node, as they do once every node
// has joined through a member). No clock enters: a node acknowledges one
// request at a time and keeps it until the request is released or yields,
// and a candidate yields only before it holds, so two holders would need
// a node that acknowledged both at once. What depends on timing is only
// liveness and fairness: every candidate is served once the cluster has
// settled (requests first in ticket order, then as acknowledged), and
// candidates that ask at the same moment are ordered by node and service
// ID. In a partition each side may grant the lease, as each side sees the
// other's nodes dead; the same happens when the failure detector falsely
// declares a node dead. After healing a grant already made is not revoked;
// new grants follow one queue once the extra holder releases. Leases are
// for ordering start-ups, not for mutual exclusion that must hold under
// partitions. See docs/design.md.
//
// Every node of a cluster that uses leases must run Run (the daemon's
// agents do): a node alive that does not acknowledge blocks every grant.
//
// Acquire publishes and waits; Request and Wait do the same in two steps,
// for a caller that must know its request is published before it waits
// (the daemon, which holds leases for its CLI).
package lease

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Prefix starts the keys of lease requests ("lease/<label>/<service ID>")
// and acknowledgements ("lease/<label>").
const Prefix = "lease/"

// Request is one candidate's request for a label.
type Request struct {
	Label     string
	ServiceID string
	Node      string    // the node that published it
	At        time.Time // when it was made, by its node's clock: shown, never compared
	Ticket    uint64    // its place in the queue: one more than the highest its node knew
	Epoch     uint64    // raised each time it yields
}

// ref names a request at an epoch: what an acknowledgement names.
type ref struct {
	node, serviceID string
	ticket, epoch   uint64
}

func (r Request) ref() ref { return ref{r.Node, r.ServiceID, r.Ticket, r.Epoch} }

// compareRefs orders requests: ticket, then node ID, then service ID.
func compareRefs(a, b ref) int {
	if c := cmp.Compare(a.ticket, b.ticket); c != 0 {
		return c
	}
	if c := strings.Compare(a.node, b.node); c != 0 {
		return c
	}
	return strings.Compare(a.serviceID, b.serviceID)
}

// same tells whether a and b name the same request (at any epoch).
func same(a, b ref) bool { return compareRefs(a, b) == 0 }

// before orders requests.
func before(a, b Request) int { return compareRefs(a.ref(), b.ref()) }

// key is the node key of a request.
func key(label, serviceID string) string { return Prefix + label + "/" + serviceID }

// ackKey is the node key of a node's acknowledgement for label.
func ackKey(label string) string { return Prefix + label }

func encodeRequest(r Request) string {
	return fmt.Sprintf("%d %d %d", r.Ticket, r.Epoch, r.At.UnixNano())
}

// decodeRequest parses a request's value; false for one that does not
// parse (of an earlier version: a bare time).
func decodeRequest(v string) (ticket, epoch uint64, at time.Time, ok bool) {
	var ns int64
	if n, err := fmt.Sscanf(v, "%d %d %d", &ticket, &epoch, &ns); err != nil || n != 3 || ticket == 0 {
		return 0, 0, time.Time{}, false
	}
	return ticket, epoch, time.Unix(0, ns), true
}

func encodeAck(r ref) string {
	return fmt.Sprintf("%d %d %s %s", r.ticket, r.epoch, strconv.Quote(r.serviceID), strconv.Quote(r.node))
}

func decodeAck(v string) (ref, bool) {
	var r ref
	if n, err := fmt.Sscanf(v, "%d %d %q %q", &r.ticket, &r.epoch, &r.serviceID, &r.node); err != nil || n != 4 {
		return ref{}, false
	}
	return r, true
}

// Queue returns the requests for label among reqs, in queue order.
func Queue(reqs []Request, label string) []Request {
	var q []Request
	for _, r := range reqs {
		if r.Label == label {
			q = append(q, r)
		}
	}
	slices.SortFunc(q, before)
	return q
}

// Node is what a Leases needs of a scuttlebutt node.
type Node interface {
	ID() string
	UpdateLocal(key, value string) error
	DeleteLocal(key string) error
	Nodes() []scuttlebutt.NodeInfo
	State(nodeID string) (map[string]string, bool)
}

// Options configure Leases.
type Options struct {
	// Spread and Skew bounded the spread of a request and the clocks'
	// disagreement when a request held after a settle time. Ignored: a
	// request holds when every live node acknowledges it.
	Spread, Skew time.Duration
	// Poll is how often Run and a waiting candidate look at the cluster's
	// state. Default 100 ms.
	Poll time.Duration
	// Now is the wall clock of the time shown in requests; nil: the
	// node's Now if it has one (a *scuttlebutt.Node), else time.Now.
	Now func() time.Time
}

// Leases acquires and releases leases through one node, and acknowledges
// the requests of the cluster (Run).
type Leases struct {
	node Node
	opt  Options
}

// New returns the leases of node.
func New(node Node, opt Options) *Leases {
	if opt.Poll == 0 {
		opt.Poll = 100 * time.Millisecond
	}
	if opt.Now == nil {
		opt.Now = time.Now
		if c, ok := node.(scuttlebutt.Clock); ok {
			opt.Now = c.Now
		}
	}
	return &Leases{node: node, opt: opt}
}

// Settle is the time a request waited before it could hold, when holding
// depended on clocks: now 0, as a request holds once every live node
// acknowledges it.
func (l *Leases) Settle() time.Duration { return 0 }

// ErrBadName is returned for a label or service ID that is empty, "." or
// "..", or holds other bytes than A-Z a-z 0-9 . _ - (the bytes of service
// names), or whose request's key would pass scuttlebutt.MaxKeySize.
var ErrBadName = errors.New("lease: label and service ID must be non-empty, of A-Z a-z 0-9 . _ -, and short enough for a key")

// ValidName reports whether s may be a label or a service ID.
func ValidName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func checkNames(label, serviceID string) error {
	if !ValidName(label) || !ValidName(serviceID) {
		return fmt.Errorf("%w: %q, %q", ErrBadName, label, serviceID)
	}
	if k := key(label, serviceID); len(k) > scuttlebutt.MaxKeySize {
		return fmt.Errorf("%w: the key %q is %d bytes, the limit is %d", ErrBadName, k, len(k), scuttlebutt.MaxKeySize)
	}
	return nil
}

// Acquire publishes a request for label by serviceID (kept if one is
// published already, so a retried Acquire keeps its place), then waits
// until it holds the lease. It returns ctx's error if ctx ends first; the
// request stays published then (Release withdraws it).
func (l *Leases) Acquire(ctx context.Context, label, serviceID string) error {
	mine, err := l.Request(label, serviceID)
	if err != nil {
		return err
	}
	return l.Wait(ctx, mine)
}

// Request publishes a request for label by serviceID, or returns the one
// this node published already (which keeps its place), without waiting.
func (l *Leases) Request(label, serviceID string) (Request, error) {
	if err := checkNames(label, serviceID); err != nil {
		return Request{}, err
	}
	if mine, ok := l.own(label, serviceID); ok {
		return mine, nil
	}
	v := l.view(label)
	var top uint64
	for _, r := range v.reqs {
		top = max(top, r.Ticket)
	}
	for _, a := range v.acks {
		top = max(top, a.ticket)
	}
	mine := Request{Label: label, ServiceID: serviceID, Node: l.node.ID(), At: l.opt.Now(), Ticket: top + 1}
	if err := l.node.UpdateLocal(key(label, serviceID), encodeRequest(mine)); err != nil {
		return Request{}, err
	}
	l.ack(label)
	return mine, nil
}

// Wait waits until mine, a request of Request, holds its label, or ctx
// ends (then it returns ctx's error). It publishes no new request: one
// released meanwhile is not made again, and Wait then waits until ctx
// ends. While it waits it yields to earlier requests (see the package
// doc); a request it returns for holds until released.
func (l *Leases) Wait(ctx context.Context, mine Request) error {
	t := time.NewTicker(l.opt.Poll)
	defer t.Stop()
	for {
		l.ack(mine.Label)
		cur, ok := l.own(mine.Label, mine.ServiceID)
		if ok {
			v := l.view(mine.Label)
			if v.granted(cur) {
				return nil
			}
			if v.shouldYield(cur) {
				cur.Epoch++
				if err := l.node.UpdateLocal(key(cur.Label, cur.ServiceID), encodeRequest(cur)); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Run acknowledges requests, as every node of the cluster must, until ctx
// ends.
func (l *Leases) Run(ctx context.Context) {
	t := time.NewTicker(l.opt.Poll)
	defer t.Stop()
	for {
		l.ackAll()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ackAll updates this node's acknowledgements of every label.
func (l *Leases) ackAll() {
	st, _ := l.node.State(l.node.ID())
	labels := map[string]bool{}
	for k := range st {
		if rest, ok := strings.CutPrefix(k, Prefix); ok && !strings.Contains(rest, "/") {
			labels[rest] = true // an acknowledgement to keep or withdraw
		}
	}
	for label := range l.All() {
		labels[label] = true
	}
	for label := range labels {
		l.ack(label)
	}
}

// ack updates this node's acknowledgement for label: kept while the
// request it names exists at that epoch, else the first request known, or
// none.
func (l *Leases) ack(label string) {
	v := l.view(label)
	self := l.node.ID()
	cur, has := v.acks[self]
	if has {
		for _, r := range v.reqs {
			if r.ref() == cur {
				return // sticky
			}
		}
	}
	if len(v.reqs) == 0 {
		if has {
			_ = l.node.DeleteLocal(ackKey(label))
		}
		return
	}
	_ = l.node.UpdateLocal(ackKey(label), encodeAck(v.reqs[0].ref()))
}

// view is what one node sees of a label: the requests of live nodes in
// queue order, the acknowledgements of live nodes, and the live nodes.
type view struct {
	reqs []Request
	acks map[string]ref // by acknowledging node
	live []string
}

// granted tells whether every live node acknowledges mine at its epoch.
func (v view) granted(mine Request) bool {
	for _, n := range v.live {
		if a, ok := v.acks[n]; !ok || a != mine.ref() {
			return false
		}
	}
	return len(v.live) > 0
}

// shouldYield tells whether mine, not held, should raise its epoch: some
// live node acknowledges an earlier request while some acknowledges mine
// at its epoch.
func (v view) shouldYield(mine Request) bool {
	earlier, votes := false, false
	for _, a := range v.acks {
		switch {
		case a == mine.ref():
			votes = true
		case !same(a, mine.ref()) && compareRefs(a, mine.ref()) < 0:
			earlier = true
		}
	}
	return earlier && votes
}

func (l *Leases) view(label string) view {
	v := view{acks: map[string]ref{}}
	for _, ni := range l.node.Nodes() {
		if ni.Status != scuttlebutt.StatusAlive {
			continue
		}
		v.live = append(v.live, ni.ID)
		st, _ := l.node.State(ni.ID)
		if a, ok := decodeAck(st[ackKey(label)]); ok {
			v.acks[ni.ID] = a
		}
		v.reqs = append(v.reqs, requestsOf(ni.ID, st)[label]...)
	}
	slices.SortFunc(v.reqs, before)
	return v
}

// requestsOf returns the requests in one node's state, by label.
func requestsOf(node string, st map[string]string) map[string][]Request {
	out := map[string][]Request{}
	for k, val := range st {
		rest, ok := strings.CutPrefix(k, Prefix)
		if !ok {
			continue
		}
		label, id, ok := strings.Cut(rest, "/")
		if !ok || label == "" || id == "" || strings.Contains(id, "/") {
			continue
		}
		ticket, epoch, at, ok := decodeRequest(val)
		if !ok {
			continue
		}
		out[label] = append(out[label], Request{Label: label, ServiceID: id, Node: node, At: at, Ticket: ticket, Epoch: epoch})
	}
	return out
}

// own returns this node's published request, if any.
func (l *Leases) own(label, serviceID string) (Request, bool) {
	st, _ := l.node.State(l.node.ID())
	for _, r := range requestsOf(l.node.ID(), st)[label] {
		if r.ServiceID == serviceID {
			return r, true
		}
	}
	return Request{}, false
}

// Release withdraws the request of serviceID for label: the lease passes
// to the next request once the deletion spreads.
func (l *Leases) Release(label, serviceID string) error {
	if err := checkNames(label, serviceID); err != nil {
		return err
	}
	if err := l.node.DeleteLocal(key(label, serviceID)); err != nil {
		return err
	}
	l.ack(label)
	return nil
}

// Requests returns the requests for label of the live nodes known here,
// in queue order. Keys that do not parse are left out.
func (l *Leases) Requests(label string) []Request {
	return l.All()[label]
}

// All returns the requests of the live nodes known here, by label, each
// list in queue order. Keys that do not parse are left out.
func (l *Leases) All() map[string][]Request {
	out := map[string][]Request{}
	for _, ni := range l.node.Nodes() {
		if ni.Status != scuttlebutt.StatusAlive {
			continue
		}
		st, _ := l.node.State(ni.ID)
		for label, rs := range requestsOf(ni.ID, st) {
			out[label] = append(out[label], rs...)
		}
	}
	for label, q := range out {
		slices.SortFunc(q, before)
		out[label] = q
	}
	return out
}
