package tests

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// A history records, in the spirit of Jepsen's, every write a test made to
// a cluster (puts and deletes of a node's own keys, through the HTTP API or
// UpdateLocal) with its outcome, and every restart of a node with an empty
// state. check then judges the cluster's final state against it.
//
// Writers must write each node's keys one operation at a time (the order
// of a node's operations is the order they were invoked).
type history struct {
	mu  sync.Mutex
	t0  time.Time
	ops []histOp
}

type opKind int

const (
	opPut opKind = iota
	opDelete
	opRestart // the node restarted with an empty state
)

// outcome is what the writer learnt of an operation.
type outcome int

const (
	pending outcome = iota
	acked           // the node said it was done (2xx; 404 for a delete)
	failed          // the node refused it (4xx but a delete's 404): not applied
	unknown         // no answer (timeout, connection cut): maybe applied
)

type histOp struct {
	kind             opKind
	node, key, value string
	start, end       time.Duration // since the history began
	outcome          outcome
	note             string
}

func newHistory() *history { return &history{t0: time.Now()} }

// invoke records the start of an operation and returns its index for
// complete.
func (h *history) invoke(kind opKind, node, key, value string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, histOp{kind: kind, node: node, key: key, value: value, start: time.Since(h.t0)})
	return len(h.ops) - 1
}

// complete records the outcome of operation i.
func (h *history) complete(i int, o outcome, note string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops[i].outcome, h.ops[i].end, h.ops[i].note = o, time.Since(h.t0), note
}

// restarted records that node came back with an empty state: its earlier
// writes are no longer expected.
func (h *history) restarted(node string) {
	i := h.invoke(opRestart, node, "", "")
	h.complete(i, acked, "")
}

// count returns the number of operations with outcome o.
func (h *history) count(o outcome) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, op := range h.ops {
		if op.kind != opRestart && op.outcome == o {
			n++
		}
	}
	return n
}

// view is one node's view of the cluster at the end: the status of every
// node it knows, and the keys it holds of each.
type view struct {
	status map[string]string            // node -> alive, dead, left
	keys   map[string]map[string]string // node -> key -> value
}

// absent marks "no value" among a key's acceptable values.
const absent = "\x00absent"

// acceptable returns, for each key of node, the values its final state
// may hold: the latest acknowledged one (absent after a delete or
// restart), plus the value of any unknown-outcome operation since the
// last restart (it may have been applied, even late).
func (h *history) acceptable(node string) map[string][]string {
	out := map[string][]string{}
	latest := map[string]string{}
	maybe := map[string][]string{}
	for _, op := range h.ops {
		if op.node != node {
			continue
		}
		if op.kind == opRestart {
			clear(latest)
			clear(maybe)
			continue
		}
		v := op.value
		if op.kind == opDelete {
			v = absent
		}
		switch op.outcome {
		case acked:
			latest[op.key] = v
		case unknown, pending:
			maybe[op.key] = append(maybe[op.key], v)
		}
	}
	for k, v := range latest {
		out[k] = append(out[k], v)
	}
	for k, vs := range maybe {
		if _, ok := latest[k]; !ok {
			out[k] = append(out[k], absent)
		}
		out[k] = append(out[k], vs...)
	}
	return out
}

// check judges the final views of the live nodes (viewer -> view): each
// must see every live node alive, and hold, for every live node, exactly
// that node's keys as the history allows and as the node itself holds
// them. Only keys with prefix are judged (others belong to the library
// or the daemon). It returns the problems found, none if the history
// holds.
func (h *history) check(live []string, views map[string]view, prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, viewer := range live {
		v, ok := views[viewer]
		if !ok {
			bad("no view of live node %s", viewer)
			continue
		}
		for _, n := range live {
			if s := v.status[n]; s != "alive" {
				bad("%s sees live node %s as %q", viewer, n, s)
			}
		}
	}
	for _, owner := range live {
		allowed := h.acceptable(owner)
		own := views[owner].keys[owner]
		for _, viewer := range live {
			got := views[viewer].keys[owner]
			keys := map[string]bool{}
			for k := range allowed {
				keys[k] = true
			}
			for k := range got {
				if strings.HasPrefix(k, prefix) {
					keys[k] = true
				}
			}
			for _, k := range sortedKeys(keys) {
				val, ok := got[k]
				if !ok {
					val = absent
				}
				ownVal, ok := own[k]
				if !ok {
					ownVal = absent
				}
				switch ok := allowed[k]; {
				case len(ok) == 0 && val != absent:
					bad("%s holds %s's key %q = %q, never acknowledged", viewer, owner, k, val)
				case len(ok) > 0 && !slices.Contains(ok, val):
					bad("%s holds %s's key %q = %s, want %s", viewer, owner, k, show(val), showAll(ok))
				case val != ownVal:
					bad("%s holds %s's key %q = %s, %s itself holds %s", viewer, owner, k, show(val), owner, show(ownVal))
				}
			}
		}
	}
	return problems
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func show(v string) string {
	if v == absent {
		return "(absent)"
	}
	return fmt.Sprintf("%q", v)
}

func showAll(vs []string) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = show(v)
	}
	return strings.Join(s, " or ")
}

// String prints the history, one operation per line.
func (h *history) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	names := map[opKind]string{opPut: "put", opDelete: "delete", opRestart: "restart"}
	outcomes := map[outcome]string{pending: "pending", acked: "ok", failed: "failed", unknown: "unknown"}
	for _, op := range h.ops {
		fmt.Fprintf(&b, "%9.3fs %9.3fs %-8s %-7s %-10s %-8s %q %s\n", op.start.Seconds(), op.end.Seconds(),
			op.node, names[op.kind], op.key, outcomes[op.outcome], op.value, op.note)
	}
	return b.String()
}
