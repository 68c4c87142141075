package scuttlebutt

import (
	"context"
)

// Node is one member of a cluster. It is safe for concurrent use.
type Node struct {
}

// Create starts a node: it listens, and gossips with the peers it learns of.
// It does not join a cluster until Seed is called or a peer contacts it.
func Create(cfg *Config) (*Node, error) { panic("todo") }

// ID returns this node's ID.
func (n *Node) ID() string { panic("todo") }

// Addr returns the address this node advertises (the bound address once
// port 0 was resolved).
func (n *Node) Addr() string { panic("todo") }

// Seed joins the cluster through the given addresses.
func (n *Node) Seed(addrs []string) error { panic("todo") }

// UpdateLocal sets one of this node's keys.
func (n *Node) UpdateLocal(key, value string) error { panic("todo") }

// DeleteLocal deletes one of this node's keys.
func (n *Node) DeleteLocal(key string) error { panic("todo") }

// Lookup returns a key of a node as known here.
func (n *Node) Lookup(nodeID, key string) (string, bool) { panic("todo") }

// State returns a copy of all live keys of a node as known here.
func (n *Node) State(nodeID string) (map[string]string, bool) { panic("todo") }

// Nodes lists the nodes known here, this one included, sorted by ID.
func (n *Node) Nodes() []NodeInfo { panic("todo") }

// NodeInfo returns what is known of one node.
func (n *Node) NodeInfo(nodeID string) (NodeInfo, bool) { panic("todo") }

// Stats returns the node's counters.
func (n *Node) Stats() Stats { panic("todo") }

// Leave tells the cluster this node is leaving, then closes it.
func (n *Node) Leave(ctx context.Context) error { panic("todo") }

// Close stops the node without a word.
func (n *Node) Close() error { panic("todo") }
