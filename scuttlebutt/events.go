package main

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// event is one change of the cluster as streamed by GET /v1/watch.
type event struct {
	Type  string    `json:"type"` // status, update, delete
	Node  string    `json:"node"`
	Key   string    `json:"key,omitempty"`
	Value string    `json:"value,omitempty"`
	From  string    `json:"from,omitempty"` // status: previous status
	To    string    `json:"to,omitempty"`   // status: new status
	Time  time.Time `json:"time"`
}

// hub fans the cluster's changes out to the streams of GET /v1/watch and
// counts them, so that cached views know when to rebuild.
type hub struct {
	version atomic.Uint64    // bumped on every change
	now     func() time.Time // the wall clock of events' times; nil: time.Now. Set before use.

	mu   sync.Mutex
	subs map[*watcher]struct{}
}

// watcher is one subscriber of the hub. Its channel is closed when it falls
// too far behind; the stream then ends and the client reconnects.
type watcher struct {
	ch      chan event
	dropped bool
}

func newHub() *hub { return &hub{subs: map[*watcher]struct{}{}} }

func (h *hub) subscribe() *watcher {
	w := &watcher{ch: make(chan event, 256)}
	h.mu.Lock()
	h.subs[w] = struct{}{}
	h.mu.Unlock()
	return w
}

func (h *hub) unsubscribe(w *watcher) {
	h.mu.Lock()
	if _, ok := h.subs[w]; ok {
		delete(h.subs, w)
		if !w.dropped {
			close(w.ch)
		}
	}
	h.mu.Unlock()
}

// publish never blocks: a watcher whose buffer is full is dropped.
func (h *hub) publish(e event) {
	if e.Time.IsZero() {
		e.Time = wallNow(h.now).UTC()
	}
	h.version.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs {
		select {
		case w.ch <- e:
		default:
			w.dropped = true
			close(w.ch)
			delete(h.subs, w)
		}
	}
}

// subscriber receives the node's notifications: it logs what an operator
// needs, feeds the hub, and hands decommission markers to decom.
type subscriber struct {
	hub   *hub
	decom *decommissions
	log   *slog.Logger

	mu   sync.Mutex
	seen map[string]struct{} // node + "\x00" + service key: logged as added
}

// firstSeen records a service key and reports whether it is new.
func (s *subscriber) firstSeen(nodeID, key string, deleted bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]struct{}{}
	}
	k := nodeID + "\x00" + key
	_, had := s.seen[k]
	if deleted {
		delete(s.seen, k)
	} else {
		s.seen[k] = struct{}{}
	}
	return !had
}

var (
	_ scuttlebutt.NodeSubscriber   = (*subscriber)(nil)
	_ scuttlebutt.StatusSubscriber = (*subscriber)(nil)
	_ scuttlebutt.StateSubscriber  = (*subscriber)(nil)
	_ scuttlebutt.DeleteSubscriber = (*subscriber)(nil)
)

// NotifyJoin is covered by NotifyStatus.
func (s *subscriber) NotifyJoin(string) {}

// NotifyLeave is covered by NotifyStatus.
func (s *subscriber) NotifyLeave(string) {}

// NotifyStatus logs and streams every status change.
func (s *subscriber) NotifyStatus(nodeID string, from, to scuttlebutt.Status) {
	switch to {
	case scuttlebutt.StatusAlive:
		if from == scuttlebutt.StatusDead || from == scuttlebutt.StatusLeft {
			s.log.Info("node is back", "node", nodeID, "was", from.String())
		} else {
			s.log.Info("node joined", "node", nodeID)
		}
	case scuttlebutt.StatusDead:
		s.log.Warn("node died", "node", nodeID)
	case scuttlebutt.StatusLeft:
		s.log.Info("node left", "node", nodeID)
	case scuttlebutt.StatusRemoved:
		s.log.Info("node removed", "node", nodeID, "was", from.String())
	}
	fromS := ""
	if from != 0 {
		fromS = from.String()
	}
	s.hub.publish(event{Type: "status", Node: nodeID, From: fromS, To: to.String()})
}

// NotifyUpdate logs service changes, streams every key change and watches
// decommission markers.
func (s *subscriber) NotifyUpdate(nodeID, key, value string) {
	s.logUpdate(nodeID, key, value)
	if strings.HasPrefix(key, decommissionPrefix) {
		s.decom.heard(nodeID, key, value)
	}
	s.hub.publish(event{Type: "update", Node: nodeID, Key: key, Value: value})
}

// NotifyDelete logs withdrawn services and streams every key deletion.
func (s *subscriber) NotifyDelete(nodeID, key string) {
	s.logDelete(nodeID, key)
	s.hub.publish(event{Type: "delete", Node: nodeID, Key: key})
}

func (s *subscriber) logUpdate(nodeID, key, value string) {
	if !strings.HasPrefix(key, docker.KeyPrefix) {
		s.log.Debug("key set", "node", nodeID, "key", key)
		return
	}
	if r, err := docker.DecodeRecord(value); err == nil {
		msg := "service changed"
		if s.firstSeen(nodeID, key, false) {
			msg = "service added"
		}
		s.log.Info(msg, "node", nodeID, "service", r.Service, "addr", r.Addr(),
			"health", r.Health, "state", r.State)
	}
}

func (s *subscriber) logDelete(nodeID, key string) {
	if strings.HasPrefix(key, docker.KeyPrefix) {
		s.firstSeen(nodeID, key, true)
		s.log.Info("service withdrawn", "node", nodeID, "key", key)
		return
	}
	s.log.Debug("key deleted", "node", nodeID, "key", key)
}

// localPublisher wraps the node for the writers of this node's own keys (the
// HTTP API and the Docker adapter): the node does not notify its own
// changes, so they are published to the hub here.
type localPublisher struct {
	clusterNode
	hub *hub
	sub *subscriber
}

// UpdateLocal sets a key of this node and streams the change.
func (p *localPublisher) UpdateLocal(key, value string) error {
	if old, ok := p.Lookup(p.ID(), key); ok && old == value {
		return nil
	}
	if err := p.clusterNode.UpdateLocal(key, value); err != nil {
		return err
	}
	p.sub.logUpdate(p.ID(), key, value)
	p.hub.publish(event{Type: "update", Node: p.ID(), Key: key, Value: value})
	return nil
}

// DeleteLocal deletes a key of this node and streams the change.
func (p *localPublisher) DeleteLocal(key string) error {
	if _, ok := p.Lookup(p.ID(), key); !ok {
		return nil
	}
	if err := p.clusterNode.DeleteLocal(key); err != nil {
		return err
	}
	p.sub.logDelete(p.ID(), key)
	p.hub.publish(event{Type: "delete", Node: p.ID(), Key: key})
	return nil
}
