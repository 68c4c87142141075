package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// clusterNode is what the daemon needs of a node: *scuttlebutt.Node
// satisfies it; the handler tests use a fake.
type clusterNode interface {
	ID() string
	Addr() string
	UpdateLocal(key, value string) error
	DeleteLocal(key string) error
	Lookup(nodeID, key string) (string, bool)
	State(nodeID string) (map[string]string, bool)
	Nodes() []scuttlebutt.NodeInfo
	NodeInfo(nodeID string) (scuttlebutt.NodeInfo, bool)
	Stats() scuttlebutt.Stats
	Now() time.Time // the wall clock of every time written into state
}

var _ clusterNode = (*scuttlebutt.Node)(nil)

// nodeView is one node as the API shows it.
type nodeView struct {
	scuttlebutt.NodeInfo
	Decommissioned bool   `json:"decommissioned"`
	Role           string `json:"role,omitempty"`      // its key "role" (-servers): server or agent
	Bootstrap      bool   `json:"bootstrap,omitempty"` // its key "bootstrap" is "true"
}

// nodeJSON is a node as decoded by the CLI (scuttlebutt.Status has no
// UnmarshalText).
type nodeJSON struct {
	ID             string    `json:"id"`
	Addr           string    `json:"addr"`
	Generation     uint64    `json:"generation"`
	Status         string    `json:"status"`
	LastHeard      time.Time `json:"last_heard"`
	Keys           int       `json:"keys"`
	Phi            float64   `json:"phi"`
	Local          bool      `json:"local"`
	Decommissioned bool      `json:"decommissioned"`
	Role           string    `json:"role"`
	Bootstrap      bool      `json:"bootstrap"`
}

// nodeDetail is one node with its keys.
type nodeDetail struct {
	nodeView
	State map[string]string `json:"state"`
}

func (s *server) nodes() []nodeView {
	list := s.node.Nodes()
	out := make([]nodeView, len(list))
	for i, ni := range list {
		out[i] = s.nodeView(ni)
	}
	return out
}

// nodeView is a node as the API shows it: with its decommission and role.
func (s *server) nodeView(ni scuttlebutt.NodeInfo) nodeView {
	v := nodeView{NodeInfo: ni, Decommissioned: s.decom.isOut(ni.ID)}
	v.Role, _ = s.node.Lookup(ni.ID, roleKey)
	b, _ := s.node.Lookup(ni.ID, bootstrapKey)
	v.Bootstrap = b == "true"
	return v
}

// instanceView is one service instance as the API shows it.
type instanceView struct {
	Service   string            `json:"service"`
	Node      string            `json:"node"`      // ID of the node publishing it
	NodeAddr  string            `json:"node_addr"` // that node's gossip address
	Addr      string            `json:"addr"`      // host:port to reach the instance at
	Host      string            `json:"host"`
	Port      int               `json:"port"`
	Private   int               `json:"private_port"`
	Proto     string            `json:"proto"`
	Health    string            `json:"health"` // none, starting, healthy, unhealthy
	State     string            `json:"state"`  // running, paused, unknown
	Healthy   bool              `json:"healthy"`
	Container string            `json:"container"`
	Name      string            `json:"name"`
	Image     string            `json:"image"`
	Tags      []string          `json:"tags,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Started   int64             `json:"started"` // Unix seconds
	Key       string            `json:"key"`

	// Of health checks (checkView, in registrations.go) and TTLs: see
	// docker.Record.
	Verdict string          `json:"verdict"` // expired, else the check's status, else health
	Check   *checkView      `json:"check,omitempty"`
	Expires *time.Time      `json:"expires,omitempty"`
	Expired bool            `json:"expired,omitempty"`
	Info    json.RawMessage `json:"info,omitempty"`
	// Maintenance is the reason the instance is in maintenance (verdict
	// "maintenance", never healthy); empty: it is not.
	Maintenance string `json:"maintenance,omitempty"`
}

func toInstanceView(in docker.Instance, now time.Time) instanceView {
	v := instanceView{
		Service: in.Service, Node: in.Node, NodeAddr: in.NodeAddr, Addr: in.Addr(),
		Host: in.Host, Port: in.Port, Private: in.Private, Proto: in.Proto,
		Health: in.Health, State: in.State, Healthy: in.HealthyAt(now),
		Container: in.Container, Name: in.Name, Image: in.Image, Tags: in.Tags,
		Labels: in.Labels, Started: in.Started, Key: in.Key,
		Verdict: in.Verdict(now), Expired: in.ExpiredAt(now), Info: in.Info, Maintenance: in.Maint,
	}
	addCheck(&v, in.Record)
	return v
}

// serviceSummary counts the instances of one service by health.
type serviceSummary struct {
	Name      string         `json:"name"`
	Instances int            `json:"instances"`
	Healthy   int            `json:"healthy"`
	ByHealth  map[string]int `json:"by_health"`
}

// servicesSnapshot is the services of the cluster at one hub version, with
// its renderings built once and served to every request until the next
// change: GET /services.json under load costs a copy, not an encoding.
type servicesSnapshot struct {
	version  uint64
	byName   map[string][]instanceView
	names    []string
	pretty   []byte // GET /services.json
	prettyGz []byte
	text     []byte // GET /services
	textGz   []byte
	etag     string
	lengths  [4][]string // Content-Length of pretty, prettyGz, text, textGz
}

// servicesCache rebuilds the snapshot when the hub's version moved.
type servicesCache struct {
	node clusterNode
	hub  *hub
	mu   sync.Mutex // one rebuild at a time
	cur  atomic.Pointer[servicesSnapshot]
	seq  atomic.Uint64 // rebuilds, for ETags: a rebuild for an expiry has the same version
}

// fresh tells whether a snapshot still holds at hub version v. (An expiry
// is a record its publisher rewrote: a change of the hub like any other.)
func (s *servicesSnapshot) fresh(v uint64) bool {
	return s != nil && s.version == v
}

func (c *servicesCache) get() *servicesSnapshot {
	v := c.hub.version.Load()
	if s := c.cur.Load(); s.fresh(v) {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v = c.hub.version.Load()
	if s := c.cur.Load(); s.fresh(v) {
		return s
	}
	s := buildServices(c.node, v, c.seq.Add(1))
	c.cur.Store(s)
	return s
}

func buildServices(n clusterNode, version, seq uint64) *servicesSnapshot {
	now := time.Now()
	s := &servicesSnapshot{version: version, byName: map[string][]instanceView{}}
	for name, list := range docker.Services(n) {
		views := make([]instanceView, len(list))
		for i, in := range list {
			views[i] = toInstanceView(in, now)
		}
		s.byName[name] = views
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	s.pretty, _ = json.MarshalIndent(s.byName, "", "  ")
	s.pretty = append(s.pretty, '\n')
	s.text = renderServicesText(s)
	s.prettyGz = gzipBytes(s.pretty)
	s.textGz = gzipBytes(s.text)
	for i, b := range [][]byte{s.pretty, s.prettyGz, s.text, s.textGz} {
		s.lengths[i] = []string{strconv.Itoa(len(b))}
	}
	s.etag = `"` + strconv.FormatUint(version, 36) + "-" + strconv.FormatUint(seq, 36) + "-" + strconv.Itoa(len(s.pretty)) + `"`
	return s
}

func (s *servicesSnapshot) summaries() []serviceSummary {
	out := make([]serviceSummary, 0, len(s.names))
	for _, name := range s.names {
		sum := serviceSummary{Name: name, ByHealth: map[string]int{}}
		for _, in := range s.byName[name] {
			sum.Instances++
			if in.Healthy {
				sum.Healthy++
			}
			sum.ByHealth[in.Health]++
		}
		out = append(out, sum)
	}
	return out
}

func renderServicesText(s *servicesSnapshot) []byte {
	var b bytes.Buffer
	if len(s.names) == 0 {
		b.WriteString("No services.\n")
		return b.Bytes()
	}
	for _, name := range s.names {
		list := s.byName[name]
		healthy := 0
		for _, in := range list {
			if in.Healthy {
				healthy++
			}
		}
		fmt.Fprintf(&b, "%s: %d instances, %d healthy\n", name, len(list), healthy)
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for _, in := range list {
			fmt.Fprintf(tw, "  %s\t%s\t%s\tnode %s\t%s\t%s\n", net.JoinHostPort(in.Host, strconv.Itoa(in.Port)),
				in.Verdict, in.State, in.Node, in.Name, in.Image)
		}
		tw.Flush()
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression) // once per change, served many times
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}
