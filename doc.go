// Package scuttlebutt is cluster membership and service discovery over
// gossip: every node owns versioned key-value pairs (its services, its RPC
// address, its state), and every node converges on every node's state.
//
// Nodes gossip with the Scuttlebutt protocol (van Renesse et al., 2008):
// a node sends peers its recent changes and a summary of the versions of
// every node's state it holds — a few random peers each round while a
// change is fresh, and its monitor, the next node on a ring, at every
// heartbeat; where they differ, both sides answer with the deltas the
// other lacks, ordered by staleness and bounded by the datagram size. An
// idle node sends one datagram per heartbeat. A monitor whose phi-accrual
// failure detector (package failure) suspects a silent node asks others to
// probe it, publishes a verdict as state of its own only if none can reach
// it, and a live node refutes a verdict on itself.
// A restarted node comes back with a higher generation whose state
// replaces the old one; deletes are tombstones collected after a grace
// period. docs/design.md tells why.
//
// # Using it
//
//	node, err := scuttlebutt.Create(&scuttlebutt.Config{
//		ID:              "node-1",
//		BindAddr:        "0.0.0.0:8119",
//		NodeSubscriber:  sub, // NotifyJoin, NotifyLeave
//		StateSubscriber: sub, // NotifyUpdate (and NotifyDelete, if it has it)
//	})
//	err = node.Seed([]string{"10.26.104.52:8119"})
//	err = node.UpdateLocal("rpcAddr", "10.25.104.42:5112")
//	v, ok := node.Lookup("node-2", "rpcAddr")
//	err = node.Leave(ctx) // tell the cluster, then stop
//
// Start from DefaultLANConfig, DefaultWANConfig or DefaultLocalConfig.
// Subscribers are called from one goroutine, never under the node's lock,
// and see each node's changes in version order.
//
// # Structure
//
// The protocol is Core, a pure state machine (time and datagrams in,
// datagrams and events out) with no sockets, goroutines or clock; Node
// drives a Core with a Transport, timers and subscribers. docs/protocol.md
// specifies the wire format; docs/design.md explains the design.
package scuttlebutt
