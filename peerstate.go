package scuttlebutt

import (
	"slices"
	"sort"
	"time"
)

// Reserved keys: the library's own part of every node's state. They spread
// like any key, so a node's address and departure reach nodes that never
// talked to it.
const (
	keyAddr = ReservedPrefix + "addr" // the node's advertised gossip address
	keyLeft = ReservedPrefix + "left" // set by Leave
)

// entry is one versioned key of a node; a tombstone if deleted.
type entry struct {
	key       string
	value     string
	version   uint64
	deleted   bool
	deletedAt time.Time // local time the tombstone was made or received
}

// peerState is what a node holds of one node's state: one generation of its
// versioned keys, tombstones, heartbeat and liveness.
//
// Invariant: the entries are exactly the latest version of every key seen
// with version <= maxVersion, less the tombstones collected up to lastGC;
// byVersion holds them sorted by version.
type peerState struct {
	id         string
	gen        uint64
	heartbeat  uint64
	maxVersion uint64
	lastGC     uint64
	keys       map[string]*entry
	byVersion  []*entry
	tombstones int
	live       int  // live (not deleted), non-reserved keys
	bytes      int  // entrySize summed over keys: what MaxNodeBytes bounds
	total      *int // the core's sum of bytes over all nodes, or nil

	idh  uint64  // idHash(id)
	term uint64  // this node's term of the summary (summary.go)
	sum  *uint64 // the core's summary, or nil

	watched     bool        // this node monitors it (monitor.go)
	deadBy      deathCause  // why it is dead here
	deadVersion uint64      // the highest version a verdict convicted
	probe       *probeRound // a suspicion in progress (probe.go)
	unheard     bool        // watched, and no heartbeat since
	probeAt     time.Time   // when an unheard watched node is probed
	lastMsg     time.Time   // when its last valid datagram came

	mark      uint64 // digest selection stamp (Core.newMark)
	addr      string // from keyAddr
	left      bool   // from keyLeft
	status    Status
	since     time.Time // when status last changed
	lastHeard time.Time // when its last heartbeat came, if it sends them to this node
	deadline  time.Time // before it, the detector cannot suspect this peer
}

func newPeerState(id string, gen uint64) *peerState {
	return &peerState{id: id, gen: gen, idh: idHash(id), keys: make(map[string]*entry)}
}

func (p *peerState) digest() digestEntry {
	return digestEntry{ID: p.id, Gen: p.gen, MaxVersion: p.maxVersion, LastGC: p.lastGC}
}

// get returns the live value of key.
func (p *peerState) get(key string) (string, bool) {
	e, ok := p.keys[key]
	if !ok || e.deleted {
		return "", false
	}
	return e.value, true
}

// userState copies the live keys, reserved keys left out.
func (p *peerState) userState() map[string]string {
	m := make(map[string]string, p.live)
	for k, e := range p.keys {
		if !e.deleted && !isReserved(k) {
			m[k] = e.value
		}
	}
	return m
}

func isReserved(key string) bool {
	return len(key) >= len(ReservedPrefix) && key[:len(ReservedPrefix)] == ReservedPrefix
}

// entrySize is what an entry counts towards the state limits.
func entrySize(key, value string) int { return len(key) + len(value) + EntryOverhead }

// account adds n to the bytes of this node and of the core's total.
func (p *peerState) account(n int) {
	p.bytes += n
	if p.total != nil {
		*p.total += n
	}
}

// put stores an entry whose version is higher than any held. The caller
// makes sure of that (owner: next version; receiver: contiguous deltas).
func (p *peerState) put(e *entry, now time.Time) {
	if old, ok := p.keys[e.key]; ok {
		p.unindex(old)
		p.account(-entrySize(old.key, old.value))
	}
	if e.deleted {
		e.deletedAt = now
		e.value = ""
		p.tombstones++
	} else if !isReserved(e.key) {
		p.live++
	}
	p.account(entrySize(e.key, e.value))
	p.keys[e.key] = e
	if n := len(p.byVersion); n == 0 || p.byVersion[n-1].version < e.version {
		p.byVersion = append(p.byVersion, e)
	} else {
		i := sort.Search(n, func(i int) bool { return p.byVersion[i].version >= e.version })
		p.byVersion = slices.Insert(p.byVersion, i, e)
	}
	if e.version > p.maxVersion {
		p.setMaxVersion(e.version)
	}
	switch e.key {
	case keyAddr:
		p.addr = e.value
	case keyLeft:
		p.left = !e.deleted
	}
}

// setMaxVersion sets the highest version held, keeping the summary.
func (p *peerState) setMaxVersion(v uint64) {
	p.maxVersion = v
	p.rehash()
}

// unindex removes e from the counts and the version index (not from keys).
func (p *peerState) unindex(e *entry) {
	if e.deleted {
		p.tombstones--
	} else if !isReserved(e.key) {
		p.live--
	}
	i := p.indexOf(e.version)
	if i < len(p.byVersion) && p.byVersion[i] == e {
		p.byVersion = slices.Delete(p.byVersion, i, i+1)
	}
}

// indexOf returns the position of the first entry with version >= v.
func (p *peerState) indexOf(v uint64) int {
	return sort.Search(len(p.byVersion), func(i int) bool { return p.byVersion[i].version >= v })
}

// after returns the entries with version > v, ascending.
func (p *peerState) after(v uint64) []*entry {
	return p.byVersion[p.indexOf(v+1):]
}

// collect garbage-collects tombstones older than ttl, raising lastGC.
func (p *peerState) collect(now time.Time, ttl time.Duration) {
	if p.tombstones == 0 {
		return
	}
	kept := p.byVersion[:0]
	for _, e := range p.byVersion {
		if e.deleted && now.Sub(e.deletedAt) >= ttl {
			delete(p.keys, e.key)
			p.account(-entrySize(e.key, e.value))
			p.tombstones--
			if e.version > p.lastGC {
				p.lastGC = e.version
			}
			continue
		}
		kept = append(kept, e)
	}
	clear(p.byVersion[len(kept):])
	p.byVersion = kept
}

// reset empties the state for a new generation or a full replacement.
func (p *peerState) reset(gen uint64) {
	p.gen = gen
	p.account(-p.bytes)
	p.lastGC, p.tombstones, p.live = 0, 0, 0
	p.setMaxVersion(0)
	p.keys = make(map[string]*entry)
	p.byVersion = nil
	p.addr, p.left = "", false
}
