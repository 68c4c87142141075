package scuttlebutt

// The wire protocol. Numbers here are the protocol: append only, never
// renumber. docs/protocol.md describes the encoding byte by byte.

const (
	// magic opens every message: "SB".
	magic = 0x5342
	// protocolVersion is the version of the wire format. Messages of
	// another version are refused. 2: the encrypted envelope (envelope.go).
	// 3: lean gossip: summaries, direct heartbeats to monitors, verdicts.
	// 4: suspicion confirmed through helpers (probes), deaths carried in
	// deltas, exact decoding, the key hint of the envelope, catch-up
	// streams.
	protocolVersion = 4
)

// msgType is the kind of a message.
type msgType uint8

const (
	msgSyn    msgType = 1 // digest (and wants): opens a gossip exchange
	msgSynAck msgType = 2 // deltas for the digest, wants, and a digest back
	msgAck    msgType = 3 // deltas for the SynAck's wants and digest
	msgFull   msgType = 4 // full state, over a stream only (joining)
	msgPing   msgType = 5 // a heartbeat without a summary: still taken, no longer sent (monitor.go)
	// Suspicion (probe.go): a Probe asks for a ProbeAck at once; a PingReq
	// asks a helper to probe a suspect, and the helper answers with the
	// requester's nonce: a ProbeAck if the suspect answered, a ProbeNack
	// if it did not.
	msgProbe     msgType = 6
	msgProbeAck  msgType = 7
	msgPingReq   msgType = 8
	msgProbeNack msgType = 9
	// msgCatchUp carries deltas over a stream to a peer far behind
	// (catchup.go); it is answered with an empty frame.
	msgCatchUp msgType = 10

	maxMsgType = msgCatchUp
)

func (t msgType) String() string {
	switch t {
	case msgSyn:
		return "syn"
	case msgSynAck:
		return "synack"
	case msgAck:
		return "ack"
	case msgFull:
		return "full"
	case msgPing:
		return "ping"
	case msgProbe:
		return "probe"
	case msgProbeAck:
		return "probe-ack"
	case msgPingReq:
		return "ping-req"
	case msgProbeNack:
		return "probe-nack"
	case msgCatchUp:
		return "catch-up"
	}
	return "unknown"
}

// message is one datagram or stream message.
type message struct {
	Type    msgType
	Cluster string
	From    string // sender's node ID
	Gen     uint64 // sender's generation
	// Summary, in a Syn, is the hash of the sender's (node, generation,
	// version) vector less the nodes of its digest (summary.go); in a
	// SynAck, non-zero says the Syn's summary differed from the
	// receiver's. Zero otherwise.
	Summary uint64
	Digest  []digestEntry // what the sender holds
	Wants   []digestEntry // what the sender lacks: send deltas from here
	Deltas  []nodeDelta
}

// digestEntry summarises what a node holds of one node's state.
type digestEntry struct {
	ID         string
	Gen        uint64
	MaxVersion uint64
	LastGC     uint64
}

// nodeDelta carries entries of one node's state.
//
// Entries are in ascending version and contiguous from FromVersion: the
// receiver may apply them only if it holds that node's state up to at least
// FromVersion. After applying them it holds everything up to MaxVersion.
// A Reset delta replaces the receiver's state of the node instead (the
// receiver was too far behind for tombstones already collected, or held an
// older generation).
type nodeDelta struct {
	ID          string
	Gen         uint64
	Reset       bool
	FromVersion uint64
	MaxVersion  uint64
	LastGC      uint64
	// Dead, if not zero, says the sender holds the node dead by a verdict
	// on this version: a receiver that holds no later version holds it
	// dead too, whoever still holds the verdict.
	Dead    uint64
	Entries []wireEntry
}

// wireEntry is one versioned key; a tombstone if Deleted.
type wireEntry struct {
	Key     string
	Value   string
	Version uint64
	Deleted bool
}
