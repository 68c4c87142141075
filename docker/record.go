package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// KeyPrefix starts every key the adapter publishes. The whole layout is
//
//	svc/<service>/<container id, 12 hex digits>/<private port>/<protocol>
//
// for example "svc/web/4f3c2a1b9e8d/8080/tcp". Service names are reduced to
// [A-Za-z0-9._-] (anything else becomes '-') and at most 64 bytes, so a key
// never holds more than 3 slashes and never passes 100 bytes.
const KeyPrefix = "svc/"

// RecordVersion is the value of the "v" field of the records this package
// writes. DecodeRecord rejects any other version.
const RecordVersion = 1

// Health values of a Record: the container's health check status, or
// HealthNone for a container without a health check.
const (
	HealthNone      = "none"
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// State values of a Record.
const (
	StateRunning = "running"
	StatePaused  = "paused"
	// StateUnknown: the Docker daemon is unreachable; the record is kept for
	// Options.Grace and then withdrawn (not written with Options.NoMarkUnknown).
	StateUnknown = "unknown"
)

// Record is the value of one service key: one port of one container. It is
// encoded as compact JSON; it holds nothing that changes while the container
// does not (no "last seen"), so a resync that finds nothing new writes
// nothing.
type Record struct {
	V         int               `json:"v"`                // RecordVersion
	Service   string            `json:"svc"`              // service name
	Container string            `json:"cid"`              // container ID, first 12 hex digits
	Name      string            `json:"name"`             // container name, without the leading '/'
	Image     string            `json:"img"`              // image reference the container was created from
	Host      string            `json:"host"`             // address to reach the service at
	Port      int               `json:"port"`             // port to reach the service at: host port, or private port with UseContainerAddr
	Private   int               `json:"priv"`             // port inside the container
	Proto     string            `json:"proto"`            // tcp, udp or sctp
	Tags      []string          `json:"tags,omitempty"`   // from the <prefix>.tags label
	Labels    map[string]string `json:"labels,omitempty"` // the labels named by <prefix>.export
	Health    string            `json:"health"`           // none, starting, healthy or unhealthy
	State     string            `json:"state"`            // running, paused or unknown
	Started   int64             `json:"started"`          // when the container last started, Unix seconds
}

// Addr returns Host:Port.
func (r Record) Addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// Healthy reports whether the instance should receive traffic: running, and
// its health check passes or it has none.
func (r Record) Healthy() bool {
	return r.State == StateRunning && (r.Health == HealthHealthy || r.Health == HealthNone)
}

// rank orders instances healthy first: healthy, no health check, starting,
// unhealthy; anything not running after all of them.
func (r Record) rank() int {
	n := 3
	switch r.Health {
	case HealthHealthy:
		n = 0
	case HealthNone:
		n = 1
	case HealthStarting:
		n = 2
	}
	if r.State != StateRunning {
		n += 4
	}
	return n
}

// ErrRecordVersion is returned by DecodeRecord for a record of another
// version than RecordVersion.
var ErrRecordVersion = errors.New("docker: unknown record version")

// DecodeRecord decodes the value of a service key.
func DecodeRecord(value string) (Record, error) {
	var r Record
	if err := json.Unmarshal([]byte(value), &r); err != nil {
		return Record{}, fmt.Errorf("docker: decoding record: %w", err)
	}
	if r.V != RecordVersion {
		return Record{}, fmt.Errorf("%w %d", ErrRecordVersion, r.V)
	}
	return r, nil
}

func encodeRecord(r Record) string {
	b, err := json.Marshal(r) // struct fields in order, map keys sorted: deterministic
	if err != nil {
		panic(err) // strings, ints and a map of strings always encode
	}
	return string(b)
}

// serviceKey returns the key of one port of one container.
func serviceKey(service, cid string, private int, proto string) string {
	return KeyPrefix + service + "/" + shortID(cid) + "/" + strconv.Itoa(private) + "/" + proto
}

// keyContainer returns the container ID part of a service key.
func keyContainer(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, KeyPrefix)
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		return "", false
	}
	return parts[1], true
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Cluster is what the queries need of a node: the root package's
// *scuttlebutt.Node satisfies it.
type Cluster interface {
	Nodes() []scuttlebutt.NodeInfo
	State(nodeID string) (map[string]string, bool)
}

// Instance is one published service instance and the node publishing it.
type Instance struct {
	Node     string // ID of the node that published it
	NodeAddr string // that node's gossip address
	Key      string
	Record
}

// Services returns every service instance published by the live nodes of
// the cluster, by service name, each list healthy first (see Instances).
//
// Instances of nodes whose status is dead or left are left out: the services
// of a node that crashed (and so could not withdraw them) vanish from the
// answer when the failure detector declares the node dead, and those of a
// node that left at once. Records that do not decode are skipped.
func Services(c Cluster) map[string][]Instance {
	out := map[string][]Instance{}
	for _, n := range c.Nodes() {
		if n.Status != scuttlebutt.StatusAlive {
			continue
		}
		state, ok := c.State(n.ID)
		if !ok {
			continue
		}
		for k, v := range state {
			if !strings.HasPrefix(k, KeyPrefix) {
				continue
			}
			r, err := DecodeRecord(v)
			if err != nil {
				continue
			}
			out[r.Service] = append(out[r.Service], Instance{Node: n.ID, NodeAddr: n.Addr, Key: k, Record: r})
		}
	}
	for _, list := range out {
		sortInstances(list)
	}
	return out
}

// Instances returns the instances of one service across the live nodes of
// the cluster (see Services), healthy first: healthy, no health check,
// starting, unhealthy, then those not running; ties by node ID and key.
// With onlyHealthy it returns only running instances whose health check
// passes or that have none.
func Instances(c Cluster, service string, onlyHealthy bool) []Instance {
	list := Services(c)[service]
	if !onlyHealthy {
		return list
	}
	out := list[:0]
	for _, in := range list {
		if in.Healthy() {
			out = append(out, in)
		}
	}
	return out
}

func sortInstances(list []Instance) {
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if ra, rb := a.rank(), b.rank(); ra != rb {
			return ra < rb
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Key < b.Key
	})
}
