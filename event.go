package scuttlebutt

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventJoin: a node became alive (first seen, back from dead, or back
	// with a new generation).
	EventJoin EventKind = iota + 1
	// EventLeave: a node left or was declared dead.
	EventLeave
	// EventStatus: a node's status changed from From to To.
	EventStatus
	// EventUpdate: a key of a node was set to Value.
	EventUpdate
	// EventDelete: a key of a node was deleted.
	EventDelete
	// EventLimit: state from peers was refused because a limit of Config
	// was reached (Key names it: "nodes", "keys_per_node", "node_bytes",
	// "state_bytes"); NodeID is the node whose state was refused. Sent the
	// first time each limit is hit; Stats.Refused counts every refusal.
	EventLimit
)

// Event is a change the core announces: membership and state changes of
// other nodes, in the order they happened.
type Event struct {
	Kind   EventKind
	NodeID string
	Key    string // EventUpdate, EventDelete
	Value  string // EventUpdate
	From   Status // EventStatus
	To     Status // EventStatus
}

// Outgoing is a datagram the core wants sent.
type Outgoing struct {
	To   string // address
	Data []byte
}

// Ready is what the core produced since the last call of Core.Ready:
// datagrams to send and events to announce, in order.
type Ready struct {
	Messages []Outgoing
	Events   []Event
	// CatchUps are streams to open: peers far behind get the difference
	// over a stream instead of datagrams (catchup.go).
	CatchUps []CatchUp
}
