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
// one and the start of the next to the same peer, and at most maxCatchUps
// in flight from a node. Meanwhile gossip goes on as before; the datagram
// deltas of the backlog are cut as always, and duplicates are ignored on
// arrival.

// catchUpDatagrams is how many datagrams' worth of entries a peer may lack
// of the nodes of one exchange before the difference goes over a stream.
const catchUpDatagrams = 4

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
	busy bool      // a stream to it is in flight
	last time.Time // the start of the last, or its end once done
}

// catchUpInterval is the least time between two catch-ups to one peer:
// ten rounds, at least a second.
func (c *Core) catchUpInterval() time.Duration {
	return max(time.Second, 10*c.cfg.GossipInterval)
}

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
// addr in a datagram. If the peer lacks more than catchUpDatagrams
// datagrams' worth and the rate limit allows, it queues a CatchUp with
// the whole difference. The datagram still goes: it is cheap, and the
// stream may fail.
func (c *Core) catchUp(now time.Time, addr, peer string, reqs []deltaRequest) {
	if len(reqs) == 0 || peer == c.id || c.busyCatchUps >= maxCatchUps {
		return
	}
	st := c.catchUps[peer]
	if st != nil && (st.busy || now.Sub(st.last) < c.catchUpInterval()) {
		return
	}
	if !behindBytes(reqs, catchUpDatagrams*c.maxPlain) {
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
	if st == nil {
		st = &catchUpState{}
		c.catchUps[peer] = st
	}
	st.busy, st.last = true, now
	c.busyCatchUps++
	c.stats.CatchUpsOut++
	c.catchUpOut = append(c.catchUpOut, CatchUp{Peer: peer, To: addr, Data: c.wrap(b)})
}

// CatchUpDone tells the core that the catch-up stream to peer ended, at
// now, whether or not it was delivered: the next may start after
// catchUpInterval.
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
		if !st.busy && now.Sub(st.last) >= c.catchUpInterval() {
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
