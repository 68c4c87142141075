package scuttlebutt

import (
	"bytes"
	"fmt"
	"time"
)

// Catching up in bulk. Versions of a node arrive in order, cut at the end
// of a datagram: a peer that lacks megabytes of one node's state gets them
// a datagram per exchange, and the node's later news waits behind them.
// So when a node answering an exchange finds the peer lacks more than
// catchUpDatagrams datagrams' worth of entries, it moves the difference
// over a stream instead (memberlist's push/pull, the join's path): a
// CatchUp message carrying the same deltas a datagram would, uncut but for
// the stream's 64 MiB. The Core decides and builds it; the Node dials, as
// for a join. The receiver applies it as it applies a join's state, and
// answers with an empty frame once it has.
//
// Pushes are rate-limited, so that a flapping condition cannot storm: one
// stream to a peer at a time, at least catchUpInterval between the end of
// one and the start of the next to the same peer (doubling while the peer
// is not seen to take what it was sent), and at most maxCatchUps in
// flight from a node. Meanwhile gossip goes on as before: the datagram
// deltas of the backlog are cut as always, and duplicates are ignored on
// arrival.

// catchUpDatagrams is how many datagrams' worth of entries a peer may lack
// of the nodes of one exchange before the difference goes over a stream.
const catchUpDatagrams = 4

// manyDiffer is how many nodes an exchange's digest may show a peer behind
// on before this node sends it everything it holds over a stream: a digest
// shows only part of the difference, and one that differs on so many nodes
// is a burst (a partition's verdicts, its heal's refutations) that
// datagrams would carry fifty entries at a time.
const manyDiffer = 16

// burstChanges is how many recent changes make a burst: more than a
// digest holds, so that an exchange shows only part of what differs. In a
// burst while this node holds nodes dead by verdicts (a partition, or its
// heal: verdicts, refutations and withdrawals by the hundred), a peer
// behind on any node gets everything. (Not in a burst of ordinary
// changes: under heavy loss, pushing whole states then convicted live
// nodes in the simulation.)
const burstChanges = 64

// maxCatchUps bounds the catch-up streams in flight from one node: each
// holds its encoded difference (up to 64 MiB) until it is written.
const maxCatchUps = 2

// CatchUp is a stream the Core asks its Node to open: dial To, write Data
// as one frame, read the empty frame that acknowledges it, then call
// Core.CatchUpDone with Peer, whatever the outcome.
type CatchUp struct {
	Peer string // the peer's node ID
	To   string // the address to dial: where the peer's datagram came from
	Data []byte // the frame's body: an encoded CatchUp message, sealed if this node encrypts
}

// catchUpState is the rate limit of catch-ups to one peer.
type catchUpState struct {
	busy bool          // a stream to it is in flight
	last time.Time     // the start of the last, or its end once done
	wait time.Duration // the least time from last to the next
	sent []digestEntry // the nodes and versions the last one carried
}

// took tells whether the peer holds all the last catch-up carried of a
// node, by its entries seen or the requests made for it: it is not stuck.
func (st *catchUpState) took(reqs []deltaRequest, seen [][]digestEntry) bool {
	for _, s := range st.sent {
		for _, es := range seen {
			for _, e := range es {
				if e.ID == s.ID && e.Gen == s.Gen && e.MaxVersion >= s.MaxVersion {
					return true
				}
			}
		}
		for _, r := range reqs {
			if r.p.id == s.ID && r.p.gen == s.Gen && !r.unknown && !r.reset && r.from >= s.MaxVersion {
				return true
			}
		}
	}
	return false
}

// catchUpInterval is the least time between two catch-ups to one peer:
// ten rounds, at least a second. It doubles with each catch-up to a peer
// that did not take all of the last one (it may refuse what it is sent,
// past its own limits, say), up to maxCatchUpBackoff times, and is back
// to this once the peer is seen to hold all the last one carried of a
// node.
func (c *Core) catchUpInterval() time.Duration {
	return max(time.Second, 10*c.cfg.GossipInterval)
}

// maxCatchUpBackoff bounds the doubling of catchUpInterval: a peer that
// never catches up gets its difference every 32 intervals (32 s at the
// local preset's 1 s, 64 s at LAN's 2 s).
const maxCatchUpBackoff = 32

// behindBytes tells whether the entries the requests lack take more than
// limit bytes on the wire. It stops counting at limit.
func behindBytes(reqs []deltaRequest, limit int) bool {
	n := 0
	for i := range reqs {
		for _, e := range reqs[i].p.after(reqs[i].from) {
			n += len(e.key) + len(e.value) + 4 + uintSize(e.version) // an entry's msgpack size, at least
			if n > limit {
				return true
			}
		}
	}
	return false
}

// catchUp is called where deltas for reqs are about to be sent to peer at
// addr in a datagram; seen are the digest entries and wants of the peer's
// message. If the peer lacks more than catchUpDatagrams datagrams' worth
// and the rate limit allows, it queues a CatchUp with the whole
// difference. The datagram still goes: it is cheap, and the stream may
// fail.
func (c *Core) catchUp(now time.Time, addr, peer string, reqs []deltaRequest, seen ...[]digestEntry) {
	c.sendCatchUp(now, addr, peer, false, reqs, seen...)
}

// sendCatchUp is catchUp; with whole, the stream carries everything this
// node holds, whatever reqs say.
func (c *Core) sendCatchUp(now time.Time, addr, peer string, whole bool, reqs []deltaRequest, seen ...[]digestEntry) {
	if peer == c.id {
		return
	}
	st := c.catchUps[peer]
	if st != nil && st.busy {
		return
	}
	if st != nil && st.sent != nil && st.took(reqs, seen) {
		st.wait, st.sent = c.catchUpInterval(), nil // it was not stuck: the backoff is over
	}
	if !whole && len(reqs) == 0 || c.busyCatchUps >= maxCatchUps || st != nil && now.Sub(st.last) < st.wait {
		return
	}
	if whole || len(reqs) > manyDiffer || len(reqs) > 0 && len(c.recent) > burstChanges && c.holdsVerdicts() {
		whole, reqs = true, c.wholeState()
	}
	if !whole && !behindBytes(reqs, catchUpDatagrams*c.maxPlain) {
		return
	}
	m := message{Type: msgCatchUp, Cluster: c.cfg.ClusterID, From: c.id, Gen: c.self.gen}
	budget := maxStreamSize - EnvelopeOverhead - messageHeaderSize(msgCatchUp, m.Cluster, m.From, m.Gen) - 2*maxArrayHeader
	m.Deltas, _ = c.buildDeltas(append([]deltaRequest(nil), reqs...), budget)
	if len(m.Deltas) == 0 {
		return
	}
	var buf bytes.Buffer
	b, err := m.encode(&buf)
	if err != nil || len(b)+EnvelopeOverhead > maxStreamSize {
		c.stats.Dropped["oversize_out"]++
		return
	}
	switch {
	case st == nil:
		st = &catchUpState{wait: c.catchUpInterval()}
		c.catchUps[peer] = st
	case st.sent != nil:
		// It did not take all of the last: wait longer next time.
		st.wait = min(2*st.wait, maxCatchUpBackoff*c.catchUpInterval())
	}
	st.sent = st.sent[:0]
	for _, d := range m.Deltas {
		st.sent = append(st.sent, digestEntry{ID: d.ID, Gen: d.Gen, MaxVersion: d.MaxVersion})
	}
	st.busy, st.last = true, now
	c.busyCatchUps++
	c.stats.CatchUpsOut++
	c.catchUpOut = append(c.catchUpOut, CatchUp{Peer: peer, To: addr, Data: c.wrap(b)})
}

// CatchUpDone tells the core that the catch-up stream to peer ended, at
// now, whether or not it was delivered: the next may start after
// catchUpInterval (or longer, backing off, if the peer stays behind).
func (c *Core) CatchUpDone(peer string, now time.Time) {
	st := c.catchUps[peer]
	if st == nil || !st.busy {
		return
	}
	st.busy, st.last = false, now
	c.busyCatchUps--
}

// forgetCatchUps drops the rate limits that no longer hold anything back.
func (c *Core) forgetCatchUps(now time.Time) {
	for id, st := range c.catchUps {
		if !st.busy && now.Sub(st.last) >= maxCatchUpBackoff*c.catchUpInterval() {
			delete(c.catchUps, id)
		}
	}
}

// StepStream applies a message received over a stream: a Full (a join) or
// a CatchUp. It returns the sender's ID and whether the message was a
// Full, which the receiver answers with its own (FullState); a CatchUp is
// answered with an empty frame.
func (c *Core) StepStream(now time.Time, data []byte) (from string, full bool, err error) {
	var m *message
	plain, err := c.unwrap(data)
	if err == nil {
		m, err = decodeMessage(plain, maxStreamSize, c.cfg.ClusterID)
	}
	if err == nil && m.Type != msgFull && m.Type != msgCatchUp {
		err = fmt.Errorf("%w: %v on a stream", errBadType, m.Type)
	}
	if err == nil && m.From == c.id {
		err = errSelf
	}
	if err != nil {
		c.stats.StreamsIn++
		c.stats.Dropped["stream_"+dropReason(err)]++
		return "", false, err
	}
	if m.Type == msgFull {
		c.stats.StreamsIn++
	} else {
		c.stats.CatchUpsIn++
	}
	c.applyDeltas(now, m)
	return m.From, m.Type == msgFull, nil
}

// wholeState returns a request from version 0 for every node held here,
// this one included: the receiver merges them as it merges a join's state.
func (c *Core) wholeState() []deltaRequest {
	reqs := make([]deltaRequest, 0, len(c.order))
	for _, p := range c.order {
		reqs = append(reqs, deltaRequest{p: p})
	}
	return reqs
}

// healing is called for a message from a peer: if this node holds the
// peer dead by a verdict, the two were likely cut apart (a partition
// healing, or a peer convicted in error), and each holds what the other
// lacks of many nodes. The peer gets everything this node holds over a
// stream, as the rate limit of catch-ups allows: its verdicts on this
// side arrive at once, and so do the refutations it must see.
func (c *Core) healing(now time.Time, addr string, p *peerState) {
	if p == nil || p.status != StatusDead || p.deadBy != causeVerdict {
		return
	}
	c.sendCatchUp(now, addr, p.id, true, nil)
}

// holdsVerdicts tells whether some node is dead here by a verdict, or
// was revived in the last two catchUpIntervals.
func (c *Core) holdsVerdicts() bool {
	if !c.lastRevival.IsZero() && c.lastTick.Sub(c.lastRevival) < 2*c.catchUpInterval() {
		return true
	}
	for _, p := range c.order {
		if p.status == StatusDead && p.deadBy == causeVerdict {
			return true
		}
	}
	return false
}
