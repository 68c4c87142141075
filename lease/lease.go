// Package lease gives start-up leases over gossip, as ServiceMonitor's
// acquire-lease: the instances of a clustered service take turns to start,
// one at a time, in the order they asked.
//
// There is no consensus over gossip, so a lease is a rule every node
// applies to what it sees. A candidate publishes a request, a key of its
// own node, "lease/<label>/<service ID>" = the time it asked (its clock).
// The holder of a label is the earliest request, by (time, node ID,
// service ID), among the requests of live nodes. A candidate takes the
// lease only once its own request is the earliest it knows of and has been
// published for Settle. It releases by deleting its request; a request of
// a node declared dead or left no longer counts.
//
// What is guaranteed: while the cluster is connected, the clocks of the
// candidates differ by at most Skew, and every request reaches every node
// within Spread, at most one candidate holds a label at a time, and the
// candidates hold it in the order of their requests. (Two requests r1
// earlier than r2: r1 was published by r2's time plus Skew, so it reached
// r2's node before r2's Settle = Spread + Skew ran out, and r2 waits.) In a
// partition each side may grant the lease, as each side sees the other's
// candidates dead; the same happens when the failure detector falsely
// declares a holder's node dead, or clocks or spread exceed their bounds.
// After healing every node agrees on one queue again; a grant already made
// is not revoked, so new grants follow that queue once the extra holder
// releases. Leases are for ordering start-ups, not for mutual exclusion
// that must hold under partitions. See docs/design.md.
//
// Acquire publishes and waits; Request and Wait do the same in two steps,
// for a caller that must know its request is published before it waits
// (the daemon, which holds leases for its CLI).
package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Prefix starts the keys of lease requests.
const Prefix = "lease/"

// Request is one candidate's request for a label.
type Request struct {
	Label     string
	ServiceID string
	Node      string    // the node that published it
	At        time.Time // when it was made, by its node's clock
}

// key is the node key of a request.
func key(label, serviceID string) string { return Prefix + label + "/" + serviceID }

// before orders requests: earlier time, then node ID, then service ID.
func before(a, b Request) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if c := strings.Compare(a.Node, b.Node); c != 0 {
		return c
	}
	return strings.Compare(a.ServiceID, b.ServiceID)
}

// Queue returns the requests for label among reqs, in the order they hold
// the lease: the first holds it.
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

// Holds tells whether mine holds its label at now, given the requests of
// live nodes known (mine among them or not: it is its own node's key) and
// the settle time.
func Holds(reqs []Request, mine Request, now time.Time, settle time.Duration) bool {
	if now.Sub(mine.At) < settle {
		return false
	}
	for _, r := range Queue(reqs, mine.Label) {
		if r.Node == mine.Node && r.ServiceID == mine.ServiceID {
			continue
		}
		if before(r, mine) < 0 {
			return false
		}
	}
	return true
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
	// Spread bounds the time a request takes to reach every node. Default:
	// 20 gossip rounds of the LAN preset (4 s).
	Spread time.Duration
	// Skew bounds how far the candidates' clocks differ. Default 1 s.
	Skew time.Duration
	// Poll is how often a waiting candidate looks at the cluster's state.
	// Default 100 ms.
	Poll time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Leases acquires and releases leases through one node.
type Leases struct {
	node Node
	opt  Options
}

// New returns the leases of node.
func New(node Node, opt Options) *Leases {
	if opt.Spread == 0 {
		opt.Spread = 4 * time.Second
	}
	if opt.Skew == 0 {
		opt.Skew = time.Second
	}
	if opt.Poll == 0 {
		opt.Poll = 100 * time.Millisecond
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Leases{node: node, opt: opt}
}

// Settle is how long a request is published before it may hold a lease:
// Spread plus Skew.
func (l *Leases) Settle() time.Duration { return l.opt.Spread + l.opt.Skew }

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
	mine := Request{Label: label, ServiceID: serviceID, Node: l.node.ID(), At: l.opt.Now()}
	if err := l.node.UpdateLocal(key(label, serviceID), strconv.FormatInt(mine.At.UnixNano(), 10)); err != nil {
		return Request{}, err
	}
	return mine, nil
}

// Wait waits until mine, a request of Request, holds its label, or ctx
// ends (then it returns ctx's error). It does not publish anything: a
// request released meanwhile is not made again, and Wait then waits until
// ctx ends.
func (l *Leases) Wait(ctx context.Context, mine Request) error {
	t := time.NewTicker(l.opt.Poll)
	defer t.Stop()
	for !Holds(l.Requests(mine.Label), mine, l.opt.Now(), l.Settle()) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// own returns this node's published request, if any.
func (l *Leases) own(label, serviceID string) (Request, bool) {
	st, _ := l.node.State(l.node.ID())
	v, ok := st[key(label, serviceID)]
	if !ok {
		return Request{}, false
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return Request{}, false
	}
	return Request{Label: label, ServiceID: serviceID, Node: l.node.ID(), At: time.Unix(0, ns)}, true
}

// Release withdraws the request of serviceID for label: the lease passes
// to the next request once the deletion spreads.
func (l *Leases) Release(label, serviceID string) error {
	if err := checkNames(label, serviceID); err != nil {
		return err
	}
	return l.node.DeleteLocal(key(label, serviceID))
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
		for k, v := range st {
			rest, ok := strings.CutPrefix(k, Prefix)
			if !ok {
				continue
			}
			label, id, ok := strings.Cut(rest, "/")
			if !ok || label == "" || id == "" || strings.Contains(id, "/") {
				continue
			}
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			out[label] = append(out[label], Request{Label: label, ServiceID: id, Node: ni.ID, At: time.Unix(0, ns)})
		}
	}
	for label, q := range out {
		slices.SortFunc(q, before)
		out[label] = q
	}
	return out
}
