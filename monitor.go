package scuttlebutt

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Direct monitoring (docs/design.md, "Heartbeats on the ring").
// Heartbeats do not travel in digests: every HeartbeatInterval a node
// sends a Syn to its monitor, the next live node on a ring ordered by a
// hash of their IDs (and to the dead nodes between them), and each node
// judges only the live node it monitors (the one it follows on the ring),
// with its phi-accrual detector. The heartbeat carries the summary of all
// its sender holds: when every node's summary equals its successor's, all
// are equal, so the heartbeats are also the idle anti-entropy, and an idle
// cluster sends one datagram per node per heartbeat. A monitor convicts
// only what other nodes confirm (probe.go).
// Every node computes the ring from its own view, so monitors are re-chosen
// as the membership changes, and every live node is watched.
//
// A monitor that convicts publishes a verdict as ordinary state of its
// own, the key _sb/dead/<ID> = "<generation>.<version>": the node's
// generation and the highest version of its state the monitor held. Every
// node that holds a verdict and no newer version of the node's state
// declares it dead. A live node that learns of a verdict on itself refutes
// it by publishing a newer version (the key _sb/alive), which revives it
// wherever it arrives: a monitor that convicted in error (cut off from the
// node, or slow) costs a brief death, never a lasting one.
//
// A node that suspects a peer and hears nothing at all, from anyone (the
// suspect, its helpers, other nodes), for a whole probe window is
// isolated: the fault is likely its own (its inbound traffic is lost, it
// is cut off). It publishes no verdict then, so that its trouble does not
// kill healthy nodes, and declares every peer dead in its own view only;
// the peers come back in its view once an exchange shows it holds the
// same state as a peer (it has caught up with the verdicts it missed).

// monitorsPerNode is how many nodes watch each node. One is enough since
// a suspicion is confirmed through helpers: a monitor that cannot hear a
// node convicts it only if others cannot reach it either.
const monitorsPerNode = 1

// Reserved keys of monitoring.
const (
	keyVerdictPrefix = ReservedPrefix + "dead/" // + node ID: a verdict
	keyAlive         = ReservedPrefix + "alive" // bumped to refute a verdict
)

// deathCause says why a peer is dead here.
type deathCause uint8

const (
	causeNone      deathCause = iota
	causeVerdict              // a verdict of a monitor, until a newer version arrives
	causeIsolation            // this node heard no one, until it is in sync again
)

// verdict is a parsed verdict value.
type verdict struct {
	gen, version uint64
}

func (v verdict) String() string {
	return strconv.FormatUint(v.gen, 10) + "." + strconv.FormatUint(v.version, 10)
}

func parseVerdict(s string) (verdict, bool) {
	g, ver, ok := strings.Cut(s, ".")
	if !ok {
		return verdict{}, false
	}
	gen, err1 := strconv.ParseUint(g, 10, 64)
	version, err2 := strconv.ParseUint(ver, 10, 64)
	return verdict{gen, version}, err1 == nil && err2 == nil
}

// ringPos orders the ring: a hash of the ID, so that monitors are spread
// whatever the IDs look like.
func ringPos(p *peerState) uint64 { return mix64(p.idh) }

// markRing notes that the ring must be recomputed before it is next used.
func (c *Core) markRing() { c.ringDirty = true }

// updateRing recomputes the ring, this node's monitors (its successors)
// and the nodes it watches (its predecessors). The ring holds the alive
// and the dead nodes: walking forward, a node sends its heartbeat to
// every node up to its monitorsPerNode-th live successor, dead ones on the
// way included, so that a node the cluster holds dead but which is alive
// (cut off one way, paused) still hears its predecessor and convicts no
// one for its own trouble, and a partition heals at the first heartbeat
// after it; walking back, it watches its live predecessor. A newly
// watched node is judged from now, with a fresh detector history.
func (c *Core) updateRing(now time.Time) {
	if !c.ringDirty {
		return
	}
	c.ringDirty = false
	ring := c.ring[:0]
	live := 0
	for _, p := range c.order {
		if p == c.self || (p.status == StatusAlive || p.status == StatusDead) && p.addr != "" {
			ring = append(ring, p)
			if c.ringLive(p) {
				live++
			}
		}
	}
	slices.SortFunc(ring, func(a, b *peerState) int {
		if c := cmp.Compare(ringPos(a), ringPos(b)); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	c.ring = ring
	n := len(ring)
	i := slices.Index(ring, c.self)
	k := min(monitorsPerNode, live-1)
	c.monitors = c.monitors[:0]
	for j, found := 1, 0; j < n && found < k; j++ {
		p := ring[(i+j)%n]
		c.monitors = append(c.monitors, p)
		if c.ringLive(p) {
			found++
		}
	}
	// Suspects (probe.go) are watched but do not count: a node whose
	// watched nodes are all suspected watches the next ones already, so
	// that a run of nodes cut off by a partition is probed in a few
	// rounds, not a detection time per three nodes.
	watched := make([]*peerState, 0, k)
	for j, found := 1, 0; j < n && found < k; j++ {
		if p := ring[(i-j+n)%n]; c.ringLive(p) {
			watched = append(watched, p)
			if p.probe == nil {
				found++
			}
		}
	}
	for _, p := range c.watched {
		if !slices.Contains(watched, p) {
			p.watched, p.unheard = false, false
			c.endProbe(p)
			c.detector.Forget(p.id)
		}
	}
	for _, p := range watched {
		if !p.watched {
			p.watched = true
			c.detector.Forget(p.id)
			c.heard(now, p) // judged from now
			// Probed if its heartbeats do not start soon, at once if
			// nothing came from it for that long already (probe.go).
			p.unheard, p.probeAt = true, now.Add(c.unheardGrace())
			if now.Before(c.alarmUntil) && (p.lastMsg.IsZero() || now.Sub(p.lastMsg) > c.unheardGrace()) {
				p.probeAt = now
			}
		}
	}
	c.watched = watched
}

// ringLive tells whether a node of the ring counts as live there: alive,
// or dead here only because this node was isolated.
func (c *Core) ringLive(p *peerState) bool {
	return p == c.self || p.status == StatusAlive || p.status == StatusDead && p.deadBy == causeIsolation
}

// heartbeatRounds is how many rounds apart a node's heartbeats go.
func (c *Core) heartbeatRounds() uint64 {
	return uint64(max(1, (c.cfg.HeartbeatInterval+c.cfg.GossipInterval/2)/c.cfg.GossipInterval))
}

// heartbeatDue tells whether this round sends the heartbeat. Nodes send
// in rounds of their own phase, so that a cluster's heartbeats are spread
// over the interval.
func (c *Core) heartbeatDue() bool {
	return (c.round+c.phase)%c.heartbeatRounds() == 0
}

// sendHeartbeats sends this round's heartbeat, a Syn, to this node's
// monitor and the dead nodes before it on the ring; with rotate, the
// monitor's carries a rotation of the digest. It reports whether the
// rotation went out.
func (c *Core) sendHeartbeats(rotate bool) bool {
	sent := false
	for _, p := range c.monitors {
		r := rotate && !sent && c.ringLive(p)
		c.sendSyn(p.addr, r)
		sent = sent || r
	}
	return sent
}

// onHeartbeat takes a Syn or a Ping of a peer as its heartbeat. A Syn sent
// to this node for another reason (a change spreading) counts too, but
// not within half an interval of the last: the detector models regular
// heartbeats.
func (c *Core) onHeartbeat(now time.Time, m *message) {
	p := c.peers[m.From]
	if p == nil {
		return
	}
	if m.Type == msgSyn && !p.lastHeard.IsZero() && now.Sub(p.lastHeard) < c.cfg.HeartbeatInterval/2 {
		return
	}
	p.heartbeat++
	if p.watched {
		p.unheard = false
		c.heard(now, p)
	} else {
		p.lastHeard = now
	}
}

// quietAfter is how long a suspect that some path reached is left alone
// before it may be suspected again (its heartbeats may still be lost on
// their way here, a one-way cut): twelve heartbeat intervals.
func (c *Core) quietAfter() time.Duration {
	return 12 * c.cfg.HeartbeatInterval
}

// inbound notes a valid message from a peer: this node is not isolated.
func (c *Core) inbound(now time.Time) {
	c.lastInbound = now
	if c.isolated {
		c.isolated = false
		c.resyncing = true
	}
}

// isolate declares every peer dead here: this node suspected a peer,
// asked helpers, and heard nothing at all, from anyone, for the whole
// probe window. The fault is likely its own (its inbound traffic is lost,
// it is cut off), and it cannot tell dead peers from live ones. (Silence
// alone says little: an idle node hears only from the node before it on
// the ring.)
func (c *Core) isolate(now time.Time) {
	if c.isolated {
		return
	}
	c.isolated, c.resyncing = true, false
	c.stats.Isolations++
	for _, p := range c.order {
		if p != c.self && p.status == StatusAlive {
			p.deadBy = causeIsolation
			c.setStatus(now, p, StatusDead)
		}
	}
}

// resynced revives the peers declared dead by isolation, once an exchange
// has shown that this node holds what a peer holds: every verdict it
// missed has arrived by then.
func (c *Core) resynced(now time.Time) {
	if !c.resyncing {
		return
	}
	c.resyncing = false
	for _, p := range c.order {
		if p.status == StatusDead && p.deadBy == causeIsolation {
			p.deadBy = causeNone
			c.setStatus(now, p, c.statusOf(p))
		}
	}
}

// convict publishes a verdict on a watched node and applies it here.
func (c *Core) convict(now time.Time, p *peerState) {
	c.endProbe(p)
	if c.isolated {
		return
	}
	c.alarmUntil = now.Add(2 * c.probeWindow())
	v := verdict{gen: p.gen, version: p.maxVersion}
	c.setLocal(now, keyVerdictPrefix+p.id, v.String(), false)
	c.stats.Verdicts++
	c.applyVerdict(now, p.id, v)
}

// verdictKey tells whether a key is a verdict, and on whom.
func verdictKey(key string) (string, bool) {
	return strings.CutPrefix(key, keyVerdictPrefix)
}

// verdictArrived takes a verdict found in a peer's state.
func (c *Core) verdictArrived(now time.Time, target, value string) {
	v, ok := parseVerdict(value)
	if !ok {
		return
	}
	if c.peers[target] == nil && target != c.id {
		// Its state may come after the verdict (in the same full state,
		// say): keep the verdict for then.
		if len(c.pending) < c.cfg.MaxNodes {
			if old, ok := c.pending[target]; !ok || v.gen > old.gen || v.gen == old.gen && v.version > old.version {
				c.pending[target] = v
			}
		}
		return
	}
	c.applyVerdict(now, target, v)
}

// applyVerdict declares a node dead if the verdict is on the generation
// and version held here; a verdict on this node is refuted.
func (c *Core) applyVerdict(now time.Time, target string, v verdict) {
	if target == c.id {
		if v.gen == c.self.gen && v.version >= c.self.maxVersion && c.leaving == 0 {
			c.refute(now)
		}
		return
	}
	p := c.peers[target]
	if p == nil || p.gen != v.gen || p.maxVersion > v.version || p.status == StatusLeft {
		return
	}
	p.deadVersion = max(p.deadVersion, v.version)
	if p.status == StatusAlive || p.deadBy == causeIsolation {
		p.deadBy = causeVerdict
		c.setStatus(now, p, StatusDead)
	}
}

// takePending applies a verdict that arrived before its node.
func (c *Core) takePending(now time.Time, p *peerState) {
	if v, ok := c.pending[p.id]; ok {
		delete(c.pending, p.id)
		c.applyVerdict(now, p.id, v)
	}
}

// withdrawVerdicts deletes this node's verdicts on nodes that are alive
// again, reborn or removed here: a verdict is kept only while its node is
// dead, so that nodes that join meanwhile learn of the death.
func (c *Core) withdrawVerdicts(now time.Time) {
	var stale []string
	for _, e := range c.self.byVersion {
		target, ok := verdictKey(e.key)
		if !ok || e.deleted {
			continue
		}
		v, _ := parseVerdict(e.value)
		p := c.peers[target]
		if p == nil || p.gen != v.gen || p.status != StatusDead {
			stale = append(stale, e.key)
		}
	}
	for _, k := range stale {
		c.setLocal(now, k, "", true)
	}
	if len(c.pending) > len(c.peers) {
		clear(c.pending) // verdicts on nodes that never came
	}
}

// withdrawVerdict deletes this node's verdict on p, if it holds one, as
// soon as p is no longer dead here: the withdrawal spreads with the
// refutation, not a collection later.
func (c *Core) withdrawVerdict(now time.Time, p *peerState) {
	if e, ok := c.self.keys[keyVerdictPrefix+p.id]; ok && !e.deleted {
		c.setLocal(now, e.key, "", true)
	}
}

// summaryDiffer, in a SynAck's summary field, says the Syn's summary
// differed from the receiver's.
const summaryDiffer = 1

// refute raises :alive, whose new version revives this node wherever it
// arrives.
func (c *Core) refute(now time.Time) {
	c.refutations++
	c.stats.Refutations++
	c.setLocal(now, keyAlive, strconv.FormatUint(c.refutations, 10), false)
}
