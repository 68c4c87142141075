package scuttlebutt

import (
	"maps"
	"time"
)

// Lookup returns a live key of a node as held here; reserved keys are not
// visible.
func (c *Core) Lookup(nodeID, key string) (string, bool) {
	p := c.peers[nodeID]
	if p == nil || isReserved(key) {
		return "", false
	}
	return p.get(key)
}

// State returns a copy of a node's live keys as held here.
func (c *Core) State(nodeID string) (map[string]string, bool) {
	p := c.peers[nodeID]
	if p == nil {
		return nil, false
	}
	return p.userState(), true
}

// Nodes lists the nodes known here, this one included, sorted by ID.
func (c *Core) Nodes(now time.Time) []NodeInfo {
	out := make([]NodeInfo, 0, len(c.order))
	for _, p := range c.order {
		out = append(out, c.info(p, now))
	}
	return out
}

// NodeInfo returns what is known here of one node.
func (c *Core) NodeInfo(nodeID string, now time.Time) (NodeInfo, bool) {
	p := c.peers[nodeID]
	if p == nil {
		return NodeInfo{}, false
	}
	return c.info(p, now), true
}

func (c *Core) info(p *peerState, now time.Time) NodeInfo {
	ni := NodeInfo{
		ID: p.id, Addr: p.addr, Generation: p.gen, Version: p.maxVersion,
		Heartbeat: p.heartbeat, Status: p.status, LastHeard: p.lastHeard,
		Keys: p.live, Tombstones: p.tombstones, Local: p == c.self,
	}
	if p != c.self {
		ni.Phi = c.detector.Phi(p.id, now)
	}
	return ni
}

// Live returns how many other nodes are alive.
func (c *Core) Live() int {
	n := 0
	for _, p := range c.order {
		if p != c.self && p.status == StatusAlive {
			n++
		}
	}
	return n
}

// Stats returns the core's counters.
func (c *Core) Stats() Stats {
	s := c.stats.Stats
	s.Dropped = maps.Clone(c.stats.Dropped)
	s.Refused = maps.Clone(c.stats.Refused)
	return s
}

// Version returns the generation and the highest version held here of a
// node's state. Two nodes that hold the same generation and version of a
// node hold the same state of it, as versions are applied in order.
func (c *Core) Version(nodeID string) (gen, version uint64, ok bool) {
	p := c.peers[nodeID]
	if p == nil {
		return 0, 0, false
	}
	return p.gen, p.maxVersion, true
}

// Watched returns the IDs of the nodes this node monitors: it gets their
// heartbeats and convicts them when they fall silent (docs/design.md).
func (c *Core) Watched() []string {
	c.updateRing(c.lastTick)
	ids := make([]string, len(c.watched))
	for i, p := range c.watched {
		ids[i] = p.id
	}
	return ids
}

// Monitors returns the IDs of the nodes that monitor this one: those it
// sends its heartbeat to.
func (c *Core) Monitors() []string {
	c.updateRing(c.lastTick)
	ids := make([]string, len(c.monitors))
	for i, p := range c.monitors {
		ids[i] = p.id
	}
	return ids
}
