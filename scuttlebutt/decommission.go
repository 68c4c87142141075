package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Decommissioning is done with the gossip itself. The node that takes
// POST /v1/nodes/{id}/decommission sets the key
//
//	decommission/<id> = {"at":<unix ns>,"by":"<its id>"}
//
// among its own keys. Every agent that hears a marker newer than the one it
// holds for that ID copies it into its own keys, so the marker outlives the
// node that took the request and reaches nodes that join later. The marker
// with the highest "at" wins (ties: the highest "by"). The target node, when
// it hears a marker for itself, leaves the cluster and exits; if it comes
// back with the same ID it hears the marker again and exits again.
// DELETE /v1/nodes/{id}/decommission writes a newer marker with
// "cleared":true, which spreads the same way and lets the ID in again.
// The prefix "decommission/" is reserved by the daemon: the KV API refuses
// to write it.
const decommissionPrefix = "decommission/"

// marker is the value of a decommission key.
type marker struct {
	At      int64  `json:"at"`                // when it was written, Unix nanoseconds
	By      string `json:"by"`                // the node that took the request
	Cleared bool   `json:"cleared,omitempty"` // the decommission was cleared
	MAC     string `json:"mac,omitempty"`     // HMAC under the target's token (markerMAC), when it has one
	Refused bool   `json:"refused,omitempty"` // cleared by the target: the decommission lacked its token's authority
}

// newer reports whether m wins over o.
func (m marker) newer(o marker) bool {
	if m.At != o.At {
		return m.At > o.At
	}
	if m.By != o.By {
		return m.By > o.By
	}
	return m.Cleared && !o.Cleared
}

func (m marker) encode() string {
	b, _ := json.Marshal(m)
	return string(b)
}

func decodeMarker(v string) (marker, bool) {
	var m marker
	if err := json.Unmarshal([]byte(v), &m); err != nil || m.At <= 0 || m.By == "" {
		return marker{}, false
	}
	return m, true
}

// decommissions tracks the markers of the cluster and replicates them.
type decommissions struct {
	self  string
	log   *slog.Logger
	token string             // this node's API token: markers for it must carry its HMAC
	store *decommissionStore // -data-dir; nil: markers are not saved

	mu     sync.Mutex
	node   clusterNode // this node's own keys are written through it; nil until set
	known  map[string]marker
	fire   chan struct{} // closed when a marker for self is heard
	closed bool
}

func newDecommissions(self string, log *slog.Logger) *decommissions {
	return &decommissions{self: self, log: log, known: map[string]marker{}, fire: make(chan struct{})}
}

func (d *decommissions) setNode(n clusterNode) {
	d.mu.Lock()
	d.node = n
	d.mu.Unlock()
}

// heard takes a marker seen among the keys of node from.
func (d *decommissions) heard(from, key, value string) {
	id := strings.TrimPrefix(key, decommissionPrefix)
	m, ok := decodeMarker(value)
	if !ok || id == "" {
		d.log.Debug("ignoring malformed decommission marker", "node", from, "key", key)
		return
	}
	d.mu.Lock()
	cur, had := d.known[id]
	if had && !m.newer(cur) {
		d.mu.Unlock()
		return
	}
	node := d.node
	if id == d.self && !m.Cleared && d.token != "" && !validMAC(d.token, id, m) {
		// Without this node's token's authority: refused, with a newer
		// marker that clears it everywhere.
		refusal := marker{At: m.At + 1, By: d.self, Cleared: true, Refused: true}
		d.known[id] = refusal
		d.saveLocked()
		d.mu.Unlock()
		d.log.Warn("refused a decommission of this node that does not carry its token's authority", "by", m.By, "heard_from", from)
		if node != nil {
			if err := node.UpdateLocal(key, refusal.encode()); err != nil {
				d.log.Warn("could not publish the refusal of a decommission", "err", err)
			}
		}
		return
	}
	d.known[id] = m
	d.saveLocked()
	if id == d.self {
		if !m.Cleared && !d.closed {
			d.closed = true
			close(d.fire)
		}
		if from == "" && node != nil { // restored from -data-dir: spread it again
			d.mu.Unlock()
			node.UpdateLocal(key, value)
			return
		}
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	if m.Cleared {
		d.log.Info("decommission cleared", "node", id, "by", m.By)
	} else {
		d.log.Info("node decommissioned", "node", id, "by", m.By)
	}
	if node != nil && from != d.self {
		if err := node.UpdateLocal(key, value); err != nil {
			d.log.Warn("could not copy decommission marker", "node", id, "err", err)
		}
	}
}

// set writes a marker for id from this node: decommission, or clear.
func (d *decommissions) set(id string, cleared bool) (marker, error) {
	return d.setWith(id, cleared, "")
}

// setWith writes a marker for id, with its HMAC under token when token is
// set.
func (d *decommissions) setWith(id string, cleared bool, token string) (marker, error) {
	d.mu.Lock()
	now := time.Now()
	if d.node != nil {
		now = d.node.Now()
	}
	m := marker{At: now.UnixNano(), By: d.self, Cleared: cleared}
	if cur, ok := d.known[id]; ok && cur.At >= m.At {
		m.At = cur.At + 1 // a clock behind the marker's writer must still win
	}
	if token != "" && !cleared {
		m.MAC = markerMAC(token, id, m)
	}
	node := d.node
	d.mu.Unlock()
	if err := node.UpdateLocal(decommissionPrefix+id, m.encode()); err != nil {
		return marker{}, err
	}
	d.heard(d.self, decommissionPrefix+id, m.encode())
	return m, nil
}

// saveLocked saves the markers under -data-dir, if given.
func (d *decommissions) saveLocked() {
	if d.store == nil {
		return
	}
	if err := d.store.save(d.known); err != nil {
		d.log.Warn("could not save the decommission markers in -data-dir; they will not outlive a restart", "err", err)
	}
}

// get returns the marker of id, if any.
func (d *decommissions) get(id string) (marker, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.known[id]
	return m, ok
}

// isOut reports whether id is decommissioned (and not cleared).
func (d *decommissions) isOut(id string) bool {
	m, ok := d.get(id)
	return ok && !m.Cleared
}

// decommissionView is one entry of GET /v1/decommissions.
type decommissionView struct {
	ID      string    `json:"id"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Cleared bool      `json:"cleared"`
	Refused bool      `json:"refused,omitempty"` // cleared by the node itself: the decommission lacked its token's authority
}

func (d *decommissions) list() []decommissionView {
	d.mu.Lock()
	out := make([]decommissionView, 0, len(d.known))
	for id, m := range d.known {
		out = append(out, decommissionView{ID: id, By: m.By, At: time.Unix(0, m.At).UTC(), Cleared: m.Cleared, Refused: m.Refused})
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// fired is closed when this node hears it was decommissioned.
func (d *decommissions) fired() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fire
}

// rearm makes fired usable again after a decommission that confirm found
// cleared.
func (d *decommissions) rearm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.closed = false
		d.fire = make(chan struct{})
		if m, ok := d.known[d.self]; ok && !m.Cleared {
			d.closed = true
			close(d.fire)
		}
	}
}

// confirm is called once fired: it waits until another live node holds the
// marker (so it outlives this node) or ctx ends, then reports whether the
// decommission still stands, reading every node's keys so that a newer
// "cleared" marker heard late is not missed.
func (d *decommissions) confirm(ctx context.Context, n clusterNode) bool {
	key := decommissionPrefix + d.self
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		best, _ := d.get(d.self)
		held := false
		for _, ni := range n.Nodes() {
			v, ok := n.Lookup(ni.ID, key)
			if !ok {
				continue
			}
			if m, ok := decodeMarker(v); ok && (m.Cleared || d.token == "" || validMAC(d.token, d.self, m)) {
				if m.newer(best) {
					best = m
				}
				if !ni.Local && ni.Status == scuttlebutt.StatusAlive {
					held = true
				}
			}
		}
		if held || ctx.Err() != nil {
			d.mu.Lock()
			if cur, ok := d.known[d.self]; !ok || best.newer(cur) {
				d.known[d.self] = best
			}
			d.mu.Unlock()
			return !best.Cleared
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}
