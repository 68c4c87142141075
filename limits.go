package scuttlebutt

import "fmt"

// Limits on the state a node holds (Config.MaxNodes, MaxKeysPerNode,
// MaxNodeBytes, MaxStateBytes). They are checked before state is taken, on
// what peers send as on local writes. A delta that would pass a limit is
// applied up to the entry before the one that would (so the receiver still
// holds a contiguous prefix of the node's versions), and the rest is
// refused; a node that would pass MaxNodes is not added. Nothing held is
// evicted to make room: a hostile peer can fill the room left, never take
// what honest nodes hold.

// Names of the limits, in Stats.Refused, LimitError and EventLimit.
const (
	limitNodes      = "nodes"
	limitKeys       = "keys_per_node"
	limitNodeBytes  = "node_bytes"
	limitStateBytes = "state_bytes"
)

// LimitError is returned by a local write that would pass a limit of
// Config (MaxKeysPerNode, MaxNodeBytes or MaxStateBytes).
type LimitError struct {
	Limit string // "keys_per_node", "node_bytes" or "state_bytes"
}

// Error names the limit.
func (e *LimitError) Error() string {
	return fmt.Sprintf("scuttlebutt: state limit %s reached (see Config.Max*)", e.Limit)
}

// overLimit tells whether p may take key=value (a new key, or a new value
// of one it holds), and if not, which limit it would pass.
func (c *Core) overLimit(p *peerState, key, value string) (string, bool) {
	keys, size := len(p.keys), entrySize(key, value)
	if old, ok := p.keys[key]; ok {
		size -= entrySize(old.key, old.value)
	} else {
		keys++
	}
	switch {
	case keys > c.cfg.MaxKeysPerNode:
		return limitKeys, false
	case p.bytes+size > c.cfg.MaxNodeBytes:
		return limitNodeBytes, false
	case c.stateBytes+size > c.cfg.MaxStateBytes:
		return limitStateBytes, false
	}
	return "", true
}

// fitsWhole tells whether a delta that replaces p's state (a new node, a new
// generation, a reset) stays within the limits; held is what p holds now
// (0 for a node not known yet).
func (c *Core) fitsWhole(d *nodeDelta, held int) (string, bool) {
	size := 0
	for i := range d.Entries {
		e := &d.Entries[i]
		if e.Deleted {
			size += entrySize(e.Key, "")
		} else {
			size += entrySize(e.Key, e.Value)
		}
	}
	switch {
	case len(d.Entries) > c.cfg.MaxKeysPerNode:
		return limitKeys, false
	case size > c.cfg.MaxNodeBytes:
		return limitNodeBytes, false
	case c.stateBytes-held+size > c.cfg.MaxStateBytes:
		return limitStateBytes, false
	}
	return "", true
}

// refuse counts a refusal, and announces the first of each limit.
func (c *Core) refuse(limit, nodeID string) {
	c.stats.Refused[limit]++
	if !c.limitsHit[limit] {
		c.limitsHit[limit] = true
		c.emit(Event{Kind: EventLimit, NodeID: nodeID, Key: limit})
	}
}
