package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// KeyPrefix starts every key of a service record. The adapter publishes
//
//	svc/<service>/<container id, 12 hex digits>/<private port>/<protocol>
//
// for example "svc/web/4f3c2a1b9e8d/8080/tcp". Service names are reduced to
// [A-Za-z0-9._-] (anything else becomes '-') and at most 64 bytes, so a key
// never holds more than 3 slashes and never passes 100 bytes.
//
// A service registered by a program rather than found in a container
// (`scuttlebutt watch`, Watch, Registration) has the key
//
//	svc/<service>/<service ID>
//
// whose two parts tell it from the adapter's keys: the adapter never adopts
// or deletes it.
const KeyPrefix = "svc/"

// RecordVersion is the value of the "v" field of the records this package
// writes. DecodeRecord rejects any other version. Fields added since
// (check, exp, info) are optional: records without them read as before.
const RecordVersion = 1

// Health values of a Record: the container's health check status, or
// HealthNone for a container without a health check. A record with a Check
// combines both in Health (see CombineHealth), so that readers that know
// only Health still leave a failing instance out.
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

// Record is the value of one service key: one port of one container, or
// one registered service. It is encoded as compact JSON. A record without a
// Check holds nothing that changes while the container does not (no "last
// seen"), so a resync that finds nothing new writes nothing; a record with
// a Check is rewritten when its verdict changes and when a third of its TTL
// has passed (see Watch).
type Record struct {
	V         int               `json:"v"`                // RecordVersion
	Service   string            `json:"svc"`              // service name
	Container string            `json:"cid"`              // container ID, first 12 hex digits; empty for a registration
	Name      string            `json:"name"`             // container name, without the leading '/'; the service ID of a registration
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

	// Check is the verdict of the health check scuttlebutt runs itself
	// (a <prefix>.check.* label, `scuttlebutt watch`, Watch); nil when
	// there is none.
	Check *Check `json:"check,omitempty"`
	// Expires is the time of writing plus the TTL, Unix milliseconds by
	// the publisher's clock; 0: no TTL. It is written for readers of
	// earlier versions, which compare it with their own clocks; readers of
	// this version never do (see ExpiredAt): the publisher itself marks
	// a record whose checker fell silent for a TTL.
	Expires int64 `json:"exp,omitempty"`
	// Info is free-form JSON of the publisher (`scuttlebutt watch
	// --service-info`), passed on as is.
	Info json.RawMessage `json:"info,omitempty"`
	// Maint is the reason the instance is in maintenance (draining); empty:
	// it is not. Set by its publisher (the <prefix>.maintenance label, a
	// registration's "maintenance"), or by Services from the node's
	// maintenance keys (see MaintKey).
	Maint string `json:"maint,omitempty"`
}

// CheckExpired is the Check status a publisher writes when the check of a
// record stopped reporting for a whole TTL, by the publisher's own
// monotonic clock. Readers that know only passing take it for not passing.
const CheckExpired = "expired"

// Check is the verdict of a health check as it travels in a Record.
type Check struct {
	Status string `json:"status"`        // passing, failing, starting (health.Status) or expired (CheckExpired)
	At     int64  `json:"at,omitempty"`  // the last check when the record was written, Unix milliseconds; 0: none yet
	Output string `json:"out,omitempty"` // that check's output, trimmed to fit the record
}

// Addr returns Host:Port.
func (r Record) Addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// Healthy reports whether the instance should receive traffic now: see
// HealthyAt.
func (r Record) Healthy() bool { return r.HealthyAt(time.Now()) }

// HealthyAt reports whether the instance should receive traffic at now:
// running, its Docker health check passes or it has none, its own Check
// (if any) is passing, it has not expired, and it is not in maintenance.
func (r Record) HealthyAt(now time.Time) bool {
	return r.Maint == "" && r.State == StateRunning && (r.Health == HealthHealthy || r.Health == HealthNone) &&
		(r.Check == nil || r.Check.Status == string(health.Passing)) && !r.ExpiredAt(now)
}

// ExpiredAt reports whether the record's TTL ran out: whether its
// publisher marked it expired (CheckExpired) because its checker stopped
// reporting for a TTL. The publisher decides on its own monotonic clock;
// Expires, a time by the publisher's clock, is never compared with now, a
// time by the reader's: no answer depends on two hosts' clocks agreeing.
// now is kept for callers of earlier versions. A publisher that dies is
// handled by the failure detector: its node's records leave every query
// when it is declared dead (Services).
func (r Record) ExpiredAt(now time.Time) bool {
	return r.Check != nil && r.Check.Status == CheckExpired
}

// Verdict is one word for the instance at now, for people: "maintenance"
// when it is in maintenance, else "expired" when its TTL ran out, else its
// Check's status (passing, failing, starting) when it has one, else its
// Health (healthy, none, starting, unhealthy).
func (r Record) Verdict(now time.Time) string {
	switch {
	case r.Maint != "":
		return VerdictMaintenance
	case r.ExpiredAt(now):
		return "expired"
	case r.Check != nil:
		return r.Check.Status
	}
	return r.Health
}

// rank orders instances healthy first: healthy (or passing), no health
// check, starting, unhealthy (failing, expired); anything not running after
// all of them.
func (r Record) rank(now time.Time) int {
	n := 3
	switch {
	case r.Maint != "":
		n = 3
	case r.ExpiredAt(now), r.Check != nil && r.Check.Status != string(health.Passing) && r.Check.Status != string(health.Starting):
		n = 3
	case r.Health == HealthStarting, r.Check != nil && r.Check.Status == string(health.Starting):
		if r.Health != HealthUnhealthy {
			n = 2
		}
	case r.Health == HealthHealthy, r.Health == HealthNone && r.Check != nil:
		n = 0
	case r.Health == HealthNone:
		n = 1
	}
	if r.State != StateRunning {
		n += 4
	}
	return n
}

// CombineHealth returns the Health of a record whose container reports
// docker (HealthNone without a Docker health check) and whose own check
// says check: the worse of the two, so that a reader that knows only Health
// agrees with HealthyAt on everything but the TTL.
func CombineHealth(docker string, check health.Status) string {
	switch {
	case docker == HealthUnhealthy || check == health.Failing:
		return HealthUnhealthy
	case docker == HealthStarting || check == health.Starting:
		return HealthStarting
	case docker == HealthHealthy || check == health.Passing:
		return HealthHealthy
	}
	return docker
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
	now := time.Now()
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
			r.Maint = maintOf(state, r)
			out[r.Service] = append(out[r.Service], Instance{Node: n.ID, NodeAddr: n.Addr, Key: k, Record: r})
		}
	}
	for _, list := range out {
		sortInstances(list, now)
	}
	return out
}

// Instances returns the instances of one service across the live nodes of
// the cluster (see Services), healthy first: healthy (or passing), no health
// check, starting, unhealthy (or failing, or expired), then those not
// running; ties by node ID and key. With onlyHealthy it returns only the
// instances that are Healthy: running, whose health checks pass or that
// have none, not expired and not in maintenance.
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

func sortInstances(list []Instance, now time.Time) {
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if ra, rb := a.rank(now), b.rank(now); ra != rb {
			return ra < rb
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Key < b.Key
	})
}
