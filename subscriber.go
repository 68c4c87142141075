package scuttlebutt

// NodeSubscriber is told when nodes join and leave the cluster.
//
// NotifyJoin fires when a node becomes alive: first seen, back from dead, or
// back with a new generation after a restart. NotifyLeave fires when a node
// leaves (Node.Leave) or is declared dead by the failure detector.
//
// Callbacks run on the node's single event goroutine, in the order the
// changes happened, never while the node holds a lock: a callback may call
// the node. A callback that blocks delays every later notification.
type NodeSubscriber interface {
	NotifyJoin(nodeID string)
	NotifyLeave(nodeID string)
}

// StateSubscriber is told of every change to another node's keys, in the
// order of that node's versions. It runs on the same goroutine and under the
// same rules as NodeSubscriber.
type StateSubscriber interface {
	NotifyUpdate(nodeID, key, value string)
}

// DeleteSubscriber may be implemented by a StateSubscriber to be told when a
// key of another node is deleted (a tombstone arrived), or disappears because
// the node restarted without it or was removed.
type DeleteSubscriber interface {
	NotifyDelete(nodeID, key string)
}

// StatusSubscriber may be implemented by a NodeSubscriber to be told of every
// status transition of every node (alive, dead, left, removed), for those who
// want more than join and leave.
type StatusSubscriber interface {
	NotifyStatus(nodeID string, from, to Status)
}
