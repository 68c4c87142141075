package scuttlebutt

import (
	"slices"
	"time"
)

// Suspicion, confirmed through helpers (SWIM's ping-req, with Lifeguard's
// nacks). A monitor whose detector passes the threshold for a node it
// watches does not convict it at once: it suspects it, in its own view
// only (the node stays alive everywhere, here too), and asks for proof:
//
//   - a Probe straight to the suspect, which answers any Probe with a
//     ProbeAck carrying the same nonce, sent again at each tick while the
//     suspicion lasts;
//   - a PingReq to each of probeHelpers helpers, live peers not
//     suspected here, those heard lately first and, where it can tell,
//     not the suspect's other monitors (which share its view of the
//     suspect). A helper probes the suspect with a nonce of its own and
//     answers the requester with the requester's nonce: a ProbeAck as
//     soon as the suspect answers, a ProbeNack if it did not within
//     helperWait (it probes again at each of its ticks meanwhile), or at
//     once if it does not hold the suspect alive itself.
//
// Any ProbeAck clears the suspicion: the suspect is reachable, by some
// path, and the monitor's silence was a fault of one link (a one-way cut,
// a queue that drops) or of the monitor itself. Only silence from the
// suspect on every path, confirmed by at least one helper's nack, makes a
// verdict. A monitor that hears no nack either (its inbound traffic is
// lost, or it is too slow to take it) cannot tell the suspect's silence
// from its own deafness: it convicts no one and asks again, with other
// helpers. A node without helpers (a cluster of two) convicts on its own
// probe's silence.
//
// A node that starts watching a peer and does not hear its heartbeat
// within unheardGrace probes it the same way, instead of waiting for the
// prior of its detector (two rounds a sample: 3.7 s). Suspects are
// watched but do not count among the nodes a node watches, so a node
// whose watched nodes are suspected watches the next ones at once; and
// while it suspects or convicts (for two probe windows after), a newly
// watched node that sent nothing lately is probed at once. So a run of
// nodes on the far side of a partition is probed within a few rounds, not
// a detection time per three nodes.
//
// While a suspicion lasts, the monitor sends its probe and its PingReqs
// again at every tick (a helper answers a repeated request at once if its
// suspect answered already, and otherwise keeps probing), and decides at
// the end of the probe window. At 30 % loss one tick's paths (the direct
// one and three through helpers) all fail about one time in five, the
// five ticks of a window about once in 2,000 suspicions; and suspicions
// are themselves rare once the ring is steady.

const (
	// probeHelpers is how many helpers a monitor asks to probe a suspect.
	probeHelpers = 3
	// maxHelping bounds the probes a node makes for others at once.
	maxHelping = 64
)

// probeWindow is how long a monitor waits for an answer to a suspicion
// before it decides; it decides earlier once every helper has nacked.
func (c *Core) probeWindow() time.Duration { return 5 * c.cfg.GossipInterval }

// helperWait is how long a helper waits for the suspect before it nacks.
// Nacks go out at ticks, so between three and four rounds after the
// request, before the requester decides; the helper probes again at each
// of its ticks meanwhile, and after its nack too.
func (c *Core) helperWait() time.Duration { return 3 * c.cfg.GossipInterval }

// unheardGrace is how long a newly watched peer may be silent before it
// is probed: long enough for it to learn that this node is its monitor
// now (the change that moved the ring spreads in a few rounds) and send
// its next heartbeat, and for a lossy link not to lose every heartbeat of
// it (30 % loss loses three in a row once in 37 times).
func (c *Core) unheardGrace() time.Duration {
	return 3*c.cfg.HeartbeatInterval + 5*c.cfg.GossipInterval
}

// probeRound is a suspicion in progress.
type probeRound struct {
	nonce   uint64
	started time.Time
	helpers []*peerState
	nacked  uint8 // bit i: helper i could not reach the suspect either
	alone   bool  // no other live peer at all: the probe's silence decides
}

// helpReq is a probe made for another node.
type helpReq struct {
	nonce    uint64 // of this node's probe
	reqNonce uint64 // of the requester's suspicion
	reqAddr  string
	target   string // the suspect's address
	started  time.Time
	nacked   bool
	acked    bool // the suspect answered, and the requester was told
}

// nonce returns a fresh non-zero nonce.
func (c *Core) nonce() uint64 { return c.rng.Uint64() | 1 }

// probeMsg returns a message of the suspicion protocol.
func (c *Core) probeMsg(t msgType, nonce uint64) *message {
	return &message{Type: t, Cluster: c.cfg.ClusterID, From: c.id, Summary: nonce}
}

// suspect starts a suspicion of a watched peer: a probe to it and a
// PingReq to each helper.
func (c *Core) suspect(now time.Time, p *peerState) {
	c.stats.Suspicions++
	n := c.nonce()
	c.send(p.addr, c.probeMsg(msgProbe, n))
	helpers, alone := c.pickHelpers(p)
	p.probe = &probeRound{nonce: n, started: now, helpers: helpers, alone: alone}
	c.askHelpers(p)
	c.probes[n] = p
	c.alarmUntil = now.Add(2 * c.probeWindow())
	c.markRing() // a suspect does not count among the watched
}

// askHelpers sends a PingReq for a suspect to each helper that has not
// nacked yet.
func (c *Core) askHelpers(p *peerState) {
	r := p.probe
	for i, h := range r.helpers {
		if r.nacked&(1<<i) == 0 {
			m := c.probeMsg(msgPingReq, r.nonce)
			m.Digest = []digestEntry{{ID: p.id, Gen: p.gen}}
			c.send(h.addr, m)
		}
	}
}

// endProbe forgets a peer's suspicion.
func (c *Core) endProbe(p *peerState) {
	if p.probe != nil {
		delete(c.probes, p.probe.nonce)
		p.probe = nil
		c.markRing()
	}
}

// pickHelpers chooses up to probeHelpers helpers for a suspicion of p:
// live peers with an address, not themselves suspected here: first those
// heard from within unheardGrace (where it can tell, on this node's side
// of a partition, so that their nacks come soon), then the others (an
// idle node hears from few peers; a helper that is dead or cut off
// unbeknown to this node just does not answer, and the others decide),
// the suspect's other monitors (as this node sees the ring) last. alone
// tells that there is no other live peer at all, suspected or not: a
// cluster of two.
func (c *Core) pickHelpers(p *peerState) (helpers []*peerState, alone bool) {
	var heard, other, fellow []*peerState
	fellows := c.fellowMonitors(p)
	recent := c.unheardGrace()
	alone = true
	for _, h := range c.order {
		if h == c.self || h == p || h.status != StatusAlive || h.addr == "" {
			continue
		}
		alone = false
		switch {
		case h.probe != nil:
			// Suspected here too: no helper. (A node that suspects
			// every peer is more likely deaf than right.)
		case slices.Contains(fellows, h):
			fellow = append(fellow, h)
		case !h.lastMsg.IsZero() && c.lastTick.Sub(h.lastMsg) <= recent:
			heard = append(heard, h)
		default:
			other = append(other, h)
		}
	}
	out := make([]*peerState, 0, probeHelpers)
	for _, pool := range [][]*peerState{heard, other, fellow} {
		for len(out) < probeHelpers && len(pool) > 0 {
			i := c.rng.IntN(len(pool))
			out = append(out, pool[i])
			pool[i] = pool[len(pool)-1]
			pool = pool[:len(pool)-1]
		}
	}
	return out, alone
}

// fellowMonitors returns the nodes that follow p on this node's ring up
// to its monitorsPerNode-th live successor: the other nodes that watch p.
func (c *Core) fellowMonitors(p *peerState) []*peerState {
	n := len(c.ring)
	i := slices.Index(c.ring, p)
	if i < 0 {
		return nil
	}
	var out []*peerState
	for j, found := 1, 0; j < n && found < monitorsPerNode; j++ {
		q := c.ring[(i+j)%n]
		out = append(out, q)
		if c.ringLive(q) {
			found++
		}
	}
	return out
}

// judgeProbe decides a suspicion at the end of its window, or once every
// helper has nacked: a verdict if every path was silent and a helper
// confirmed it, another round of probes if no one could confirm anything.
// Before that, it sends the probe and the requests again.
func (c *Core) judgeProbe(now time.Time, p *peerState) {
	r := p.probe
	allNacked := len(r.helpers) > 0 && int(r.nacked) == 1<<len(r.helpers)-1
	if now.Sub(r.started) < c.probeWindow() && !allNacked {
		// Again: probes and requests get lost.
		c.send(p.addr, c.probeMsg(msgProbe, r.nonce))
		c.askHelpers(p)
		return
	}
	c.endProbe(p)
	if r.nacked != 0 || r.alone {
		c.convict(now, p)
		return
	}
	c.stats.Inconclusive++
	if len(r.helpers) > 0 && !c.lastInbound.After(r.started) {
		c.isolate(now) // asked, and heard nothing at all: deaf
		return
	}
	c.suspect(now, p) // no one confirmed: ask again, other helpers
}

// cleared ends a suspicion: the suspect answered, by some path. It is not
// suspected again before another detection time (its heartbeats may still
// be lost on their way here: a one-way cut).
func (c *Core) cleared(now time.Time, p *peerState) {
	c.endProbe(p)
	c.stats.Cleared++
	p.unheard = false
	p.deadline = c.deadline(p.id)
	if later := now.Add(c.quietAfter()); p.deadline.Before(later) {
		p.deadline = later
	}
}

// onProbe answers a probe, to the datagram's source address.
func (c *Core) onProbe(addr string, m *message) {
	c.send(addr, c.probeMsg(msgProbeAck, m.Summary))
}

// onPingReq probes a suspect for the requester.
func (c *Core) onPingReq(now time.Time, addr string, m *message) {
	if len(m.Digest) != 1 {
		return
	}
	target := m.Digest[0].ID
	if target == c.id { // asked to probe this node: it is alive
		c.send(addr, c.probeMsg(msgProbeAck, m.Summary))
		return
	}
	p := c.peers[target]
	if p == nil || p.addr == "" || p.status == StatusLeft || p.status == StatusDead && p.deadBy == causeVerdict {
		// Unknown here, removed, left, or dead by a verdict: this node
		// cannot reach it either. (Dead only because this node was
		// isolated says nothing of the suspect: it is probed.)
		c.send(addr, c.probeMsg(msgProbeNack, m.Summary))
		return
	}
	for i := range c.helping {
		if h := &c.helping[i]; h.reqNonce == m.Summary && h.reqAddr == addr {
			if h.acked {
				c.send(addr, c.probeMsg(msgProbeAck, m.Summary)) // the first was lost
			}
			return // a repeated request: the probes go on
		}
	}
	if len(c.helping) >= maxHelping {
		return // busy: no answer, neither ack nor nack
	}
	h := helpReq{nonce: c.nonce(), reqNonce: m.Summary, reqAddr: addr, target: p.addr, started: now}
	c.helping = append(c.helping, h)
	c.send(p.addr, c.probeMsg(msgProbe, h.nonce))
}

// onProbeAck takes an answer: to this node's own suspicion, or to a
// probe made for another node, whose requester is told at once.
func (c *Core) onProbeAck(now time.Time, m *message) {
	if p := c.probes[m.Summary]; p != nil {
		c.cleared(now, p)
		return
	}
	for i := range c.helping {
		if h := &c.helping[i]; h.nonce == m.Summary && !h.acked {
			c.send(h.reqAddr, c.probeMsg(msgProbeAck, h.reqNonce))
			h.acked = true // kept, to answer a repeated request
			return
		}
	}
}

// onProbeNack counts a helper that could not reach a suspect either.
func (c *Core) onProbeNack(m *message) {
	p := c.probes[m.Summary]
	if p == nil {
		return
	}
	for i, h := range p.probe.helpers {
		if h.id == m.From {
			p.probe.nacked |= 1 << i
		}
	}
}

// expireHelping probes again for others, at each tick, the suspects that
// did not answer yet; nacks those that got no answer within helperWait;
// and forgets them after a probe window (a late answer is still passed on
// until then).
func (c *Core) expireHelping(now time.Time) {
	kept := c.helping[:0]
	for _, h := range c.helping {
		age := now.Sub(h.started)
		switch {
		case h.acked:
		case !h.nacked && age >= c.helperWait():
			c.send(h.reqAddr, c.probeMsg(msgProbeNack, h.reqNonce))
			h.nacked = true
		case age > 0:
			c.send(h.target, c.probeMsg(msgProbe, h.nonce))
		}
		if age < c.probeWindow() {
			kept = append(kept, h)
		}
	}
	clear(c.helping[len(kept):])
	c.helping = kept
}
