package docker

import "strings"

// Maintenance (draining): an instance in maintenance stays visible, with
// the verdict VerdictMaintenance and its reason in Record.Maint, and is
// never Healthy, so that it leaves every healthy answer (hosts, DNS,
// Prometheus discovery, the Consul-compatible passing results) while its
// connections drain.
//
// An instance is in maintenance when its record says so (the
// <prefix>.maintenance label of its container, a registration's
// maintenance reason: both survive a restart of the agent), or when the
// node publishing it holds one of these keys, written by `scuttlebutt
// maint` through the agent's API (they live as long as the node's state):
//
//	maint/node            every service of the node
//	maint/service/<ID>    the instances whose Name is ID: a registration's
//	                      service ID, or a container's name (all its ports)
//
// The value of a key is the reason, as free text.
const (
	// MaintPrefix starts every maintenance key.
	MaintPrefix = "maint/"
	// NodeMaintKey puts every service of its node in maintenance.
	NodeMaintKey = MaintPrefix + "node"
	// VerdictMaintenance is the Verdict of an instance in maintenance.
	VerdictMaintenance = "maintenance"
	// DefaultMaintReason is the reason of a maintenance set without one.
	DefaultMaintReason = "maintenance mode, no reason given"
	// MaxMaintReason bounds a maintenance reason, in bytes.
	MaxMaintReason = 256
)

// MaintKey returns the key that puts the instances whose Name is id in
// maintenance on their node.
func MaintKey(id string) string { return MaintPrefix + "service/" + id }

// MaintLabelReason returns the reason of a <prefix>.maintenance label
// value: the value itself, or DefaultMaintReason for "" and "true".
func MaintLabelReason(v string) string {
	if v = strings.TrimSpace(v); v == "" || v == "true" {
		return DefaultMaintReason
	}
	return v
}

// maintOf returns the maintenance reason of record r published by a node
// whose state is state: the record's own, else the service key's, else the
// node's; "" when it is not in maintenance.
func maintOf(state map[string]string, r Record) string {
	if r.Maint != "" {
		return r.Maint
	}
	if v, ok := state[MaintKey(r.Name)]; ok && r.Name != "" {
		return reasonOrDefault(v)
	}
	if v, ok := state[NodeMaintKey]; ok {
		return reasonOrDefault(v)
	}
	return ""
}

func reasonOrDefault(v string) string {
	if strings.TrimSpace(v) == "" {
		return DefaultMaintReason
	}
	return v
}
