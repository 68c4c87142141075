package scuttlebutt

import "time"

// NodeInfo is what this node knows of one node of the cluster.
type NodeInfo struct {
	ID         string    `json:"id"`
	Addr       string    `json:"addr"`       // advertised gossip address
	Generation uint64    `json:"generation"` // incarnation; higher after a restart
	Version    uint64    `json:"version"`    // highest version of its state held here
	Heartbeat  uint64    `json:"heartbeat"`  // heartbeats heard from it directly (by its monitors; 0 elsewhere)
	Status     Status    `json:"status"`
	LastHeard  time.Time `json:"last_heard"` // when its last heartbeat came here
	Keys       int       `json:"keys"`       // live keys held here
	Tombstones int       `json:"tombstones"` // deleted keys not yet collected
	Phi        float64   `json:"phi"`        // failure detector's suspicion now
	Local      bool      `json:"local"`      // this node itself
}

// Stats are a node's counters since it was created.
type Stats struct {
	Rounds         uint64            `json:"rounds"`
	PacketsIn      uint64            `json:"packets_in"`
	PacketsOut     uint64            `json:"packets_out"`
	BytesIn        uint64            `json:"bytes_in"`
	BytesOut       uint64            `json:"bytes_out"`
	StreamsIn      uint64            `json:"streams_in"`
	StreamsOut     uint64            `json:"streams_out"`
	CatchUpsIn     uint64            `json:"catch_ups_in"`  // catch-up streams applied (catchup.go)
	CatchUpsOut    uint64            `json:"catch_ups_out"` // catch-up streams started
	Dropped        map[string]uint64 `json:"dropped"`       // packets dropped, by reason
	Refused        map[string]uint64 `json:"refused"`       // deltas refused by a state limit, by limit
	MaxPacketBytes int               `json:"max_packet_bytes"`
	Verdicts       uint64            `json:"verdicts"`     // nodes this node convicted as their monitor
	Refutations    uint64            `json:"refutations"`  // verdicts on this node it refuted
	Isolations     uint64            `json:"isolations"`   // times it heard no one for a detection time
	Suspicions     uint64            `json:"suspicions"`   // watched nodes it suspected and probed (probe.go)
	Cleared        uint64            `json:"cleared"`      // suspicions an answer cleared
	Inconclusive   uint64            `json:"inconclusive"` // suspicions no helper confirmed, asked again
}
