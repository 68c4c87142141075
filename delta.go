package scuttlebutt

import (
	"cmp"
	"slices"
	"time"
)

// Deltas. For a peer whose digest entry says it holds (gen, maxVersion) of
// a node, the delta is every entry of that node with a higher version, in
// ascending version, cut only at the end: the receiver never holds version
// v+1 of a node without everything up to v.
//
// Under the byte budget, deltas go in this order: nodes the peer does not
// know (or holds an older generation of) first, then the nodes it misses
// most versions of (scuttle-depth), ties in random order.
//
// A peer that holds less than the tombstones already collected here
// (lastGC > its version and its lastGC) cannot be repaired by deltas: a
// deleted key whose tombstone is gone would survive there. It gets a reset:
// the node's whole state, which replaces its own.

// deltaRequest is a node a peer is behind on.
type deltaRequest struct {
	p       *peerState
	from    uint64 // the peer holds up to this version
	unknown bool   // the peer holds nothing of this generation
	reset   bool   // the peer is behind the collected tombstones
	tie     uint64 // random tie break
}

func (r *deltaRequest) missing() uint64 { return r.p.maxVersion - r.from }

// deltaFor returns the delta request for a peer that holds e of node p, if
// we hold more.
func (c *Core) deltaFor(p *peerState, e digestEntry) (deltaRequest, bool) {
	if e.Gen == 0 || e.Gen < p.gen {
		return deltaRequest{p: p, unknown: true}, true
	}
	if e.Gen > p.gen || e.MaxVersion >= p.maxVersion {
		return deltaRequest{}, false
	}
	if p.lastGC > e.MaxVersion && p.lastGC > e.LastGC {
		return deltaRequest{p: p, reset: true}, true
	}
	return deltaRequest{p: p, from: e.MaxVersion}, true
}

// buildDeltas returns deltas for the requests within budget bytes (the
// deltas array header included), most urgent first.
func (c *Core) buildDeltas(reqs []deltaRequest, budget int) ([]nodeDelta, int) {
	for i := range reqs {
		reqs[i].tie = c.rng.Uint64()
	}
	slices.SortFunc(reqs, func(a, b deltaRequest) int {
		if a.unknown != b.unknown {
			if a.unknown {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.missing(), a.missing()); c != 0 {
			return c
		}
		return cmp.Compare(a.tie, b.tie)
	})
	used := maxArrayHeader
	var out []nodeDelta
	for i := range reqs {
		r := &reqs[i]
		p := r.p
		d := nodeDelta{ID: p.id, Gen: p.gen, Reset: r.reset, FromVersion: r.from, LastGC: p.lastGC, Dead: p.deadMark()}
		// Worst case for the parts not known yet: MaxVersion and the
		// entries' array header.
		size := 1 + strSize(d.ID) + uintSize(d.Gen) + 1 + uintSize(d.FromVersion) + 9 + uintSize(d.LastGC) + uintSize(d.Dead) + maxArrayHeader
		if used+size > budget {
			break
		}
		entries := p.after(r.from)
		cut := false
		for _, e := range entries {
			we := wireEntry{Key: e.key, Value: e.value, Version: e.version, Deleted: e.deleted}
			n := we.size()
			if used+size+n > budget {
				cut = true
				break
			}
			d.Entries = append(d.Entries, we)
			size += n
		}
		if cut && len(d.Entries) == 0 {
			break
		}
		if cut {
			d.MaxVersion = d.Entries[len(d.Entries)-1].Version
		} else {
			d.MaxVersion = p.maxVersion
		}
		out = append(out, d)
		used += d.size()
		if cut {
			break
		}
	}
	return out, used
}

// deadMark is what a delta of p says of its death: the version a verdict
// convicted, if p is dead here by a verdict; 0 otherwise (alive, left, or
// dead only in this isolated node's view).
func (p *peerState) deadMark() uint64 {
	if p.status == StatusDead && p.deadBy == causeVerdict {
		return p.deadVersion
	}
	return 0
}

// applyDelta applies one node's delta from a peer, then its dead mark: a
// node the sender holds dead by a verdict on a version is dead here too
// unless a later version is held, whether or not a verdict on it is still
// held by anyone (its monitor withdraws the verdict once it removes it).
func (c *Core) applyDelta(now time.Time, d *nodeDelta) {
	c.applyEntries(now, d)
	if d.Dead != 0 && d.ID != c.id {
		if p := c.peers[d.ID]; p != nil && p.gen == d.Gen {
			c.applyVerdict(now, d.ID, verdict{gen: d.Gen, version: d.Dead})
		}
	}
}

// applyEntries applies the entries of one node's delta from a peer.
func (c *Core) applyEntries(now time.Time, d *nodeDelta) {
	if d.ID == c.id {
		c.outlive(d.Gen) // a previous life of this node, if higher (generation.go)
		return
	}
	if d.ID == "" {
		return
	}
	if r, ok := c.removed[d.ID]; ok {
		// Removed here: only a node really back is taken, a higher
		// generation or the same with a higher version (a refutation),
		// as for a digest entry (isRemoved).
		if d.Gen < r.gen || d.Gen == r.gen && d.MaxVersion <= r.version {
			return
		}
		delete(c.removed, d.ID)
	}
	p := c.peers[d.ID]
	switch {
	case p == nil:
		if d.FromVersion != 0 {
			return
		}
		if len(c.peers) >= c.cfg.MaxNodes {
			c.refuse(limitNodes, d.ID)
			return
		}
		if limit, ok := c.fitsWhole(d, 0); !ok {
			c.refuse(limit, d.ID)
			return
		}
		p = c.addPeer(now, d.ID, d.Gen)
		c.replace(now, p, d)
		c.setStatus(now, p, c.statusOf(p))
		c.takePending(now, p)
	case d.Gen < p.gen:
		return
	case d.Gen > p.gen:
		if d.FromVersion != 0 {
			return
		}
		if limit, ok := c.fitsWhole(d, p.bytes); !ok {
			c.refuse(limit, d.ID)
			return
		}
		p.heartbeat = 0
		if p.watched {
			c.detector.Forget(p.id) // a new incarnation: a new history
			c.heard(now, p)
		}
		p.deadBy, p.deadVersion = causeNone, 0
		c.replace(now, p, d)
		// A new generation is a new incarnation: it joins again.
		p.status = 0
		c.setStatus(now, p, c.statusOf(p))
		c.takePending(now, p)
	case (d.Reset || d.FromVersion == 0) && p.maxVersion < d.LastGC && p.lastGC < d.LastGC:
		// A whole state (a reset, or all entries from the start: the
		// answer to a want sent before this node knew X) newer than the
		// tombstones this copy may lack: applied on top, it would keep a
		// key whose deletion was collected. It replaces the copy.
		if limit, ok := c.fitsWhole(d, p.bytes); !ok {
			c.refuse(limit, d.ID)
			return
		}
		c.replace(now, p, d)
		c.updateStatus(now, p)
	default:
		if d.FromVersion > p.maxVersion {
			c.stats.gaps++
			return
		}
		before := p.maxVersion
		for i := range d.Entries {
			we := &d.Entries[i]
			if we.Version <= p.maxVersion {
				continue
			}
			value := we.Value
			if we.Deleted {
				value = ""
			}
			if limit, ok := c.overLimit(p, we.Key, value); !ok {
				// Hold the prefix taken so far, no more: the rest
				// is refused and asked for again later.
				c.refuse(limit, d.ID)
				c.afterApply(now, p, before)
				return
			}
			c.putEntry(now, p, we)
		}
		if d.MaxVersion > p.maxVersion {
			p.setMaxVersion(d.MaxVersion)
		}
		c.afterApply(now, p, before)
	}
}

// afterApply notes a change of p's state, if its version rose from before.
func (c *Core) afterApply(now time.Time, p *peerState, before uint64) {
	if p.maxVersion != before {
		c.noteChange(p.id)
	}
	c.updateStatus(now, p)
}

// putEntry applies one entry if it is newer than all held, and announces it.
func (c *Core) putEntry(now time.Time, p *peerState, we *wireEntry) {
	if we.Version <= p.maxVersion {
		return
	}
	_, wasLive := p.get(we.Key)
	p.put(&entry{key: we.Key, value: we.Value, version: we.Version, deleted: we.Deleted}, now)
	if isReserved(we.Key) {
		if target, ok := verdictKey(we.Key); ok && !we.Deleted {
			c.verdictArrived(now, target, we.Value)
		}
		return
	}
	switch {
	case !we.Deleted:
		c.emit(Event{Kind: EventUpdate, NodeID: p.id, Key: we.Key, Value: we.Value})
	case wasLive:
		c.emit(Event{Kind: EventDelete, NodeID: p.id, Key: we.Key})
	}
}

// replace makes p's state exactly the delta's (a new generation, a reset,
// or a node first seen), announcing only what changed.
func (c *Core) replace(now time.Time, p *peerState, d *nodeDelta) {
	old := p.userState()
	p.reset(d.Gen)
	var last uint64
	for i := range d.Entries {
		we := &d.Entries[i]
		if we.Version <= last {
			continue // not ascending: not a delta we sent
		}
		last = we.Version
		p.put(&entry{key: we.Key, value: we.Value, version: we.Version, deleted: we.Deleted}, now)
	}
	p.setMaxVersion(max(last, d.MaxVersion))
	p.lastGC = d.LastGC
	keys := make([]string, 0, len(old))
	for k := range old {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, ok := p.get(k); !ok {
			c.emit(Event{Kind: EventDelete, NodeID: p.id, Key: k})
		}
	}
	for _, e := range slices.Clone(p.byVersion) {
		if target, ok := verdictKey(e.key); ok && !e.deleted {
			c.verdictArrived(now, target, e.value)
		}
		if e.deleted || isReserved(e.key) {
			continue
		}
		if v, ok := old[e.key]; !ok || v != e.value {
			c.emit(Event{Kind: EventUpdate, NodeID: p.id, Key: e.key, Value: e.value})
		}
	}
	c.noteChange(p.id)
}
