package scuttlebutt

import (
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Limits on what a node may hold. They keep every entry small enough to fit
// in one datagram, so no entry can ever be starved by the packet bound.
const (
	// MaxIDSize is the longest node ID and cluster ID, in bytes.
	MaxIDSize = 64
	// MaxKeySize is the longest key, in bytes.
	MaxKeySize = 128
	// PacketOverhead is what a datagram needs besides one value: header,
	// cluster ID, sender ID, one delta header and one key at their limits.
	// A value may be at most MaxPacketSize - PacketOverhead bytes.
	PacketOverhead = 512
	// MinPacketSize is the smallest MaxPacketSize accepted.
	MinPacketSize = 1024
	// MaxPacketLimit is the largest MaxPacketSize accepted: a UDP payload.
	MaxPacketLimit = 65000
)

// Config configures a Node. Start from DefaultLANConfig, DefaultWANConfig or
// DefaultLocalConfig and change what differs; zero fields of a Config given
// to Create take the LAN defaults.
type Config struct {
	// ID names this node in the cluster; at most MaxIDSize bytes.
	// Empty: a random ID. The same ID after a restart means the same node,
	// back with a higher generation.
	ID string

	// BindAddr is the UDP and TCP address to listen on, "host:port".
	// Port 0 picks a free port (the same for UDP and TCP); Node.Addr tells
	// which. Default "0.0.0.0:8119". Ignored when Transport is set.
	BindAddr string

	// AdvertiseAddr is the address peers use to reach this node. Empty:
	// the bound address, with an unspecified host replaced by the first
	// non-loopback address of this host.
	AdvertiseAddr string

	// ClusterID names the cluster. Packets and streams of another cluster
	// are refused and counted, never merged. Default "default".
	ClusterID string

	// GossipInterval is the time between gossip rounds. While a change is
	// fresh a node gossips with Fanout random peers each round, so an
	// update reaches N nodes in about log(N)/log(Fanout+1) rounds; an idle
	// node sends nothing in most rounds (its heartbeat is the idle
	// exchange). Suspicions are probed once a round.
	GossipInterval time.Duration

	// HeartbeatInterval is the time between a node's heartbeats to its
	// monitor, its successor on the monitoring ring (monitor.go), rounded
	// to a whole number of rounds. The heartbeat is a Syn carrying the
	// summary of all the node holds, so it is also the idle anti-entropy:
	// an idle cluster sends one datagram per node per heartbeat. A crashed
	// node is suspected after about HeartbeatInterval plus 5.6 deviations
	// of its intervals (PhiThreshold), then confirmed by probes through
	// other nodes within a few rounds. Zero in a Config given to Create:
	// three rounds.
	HeartbeatInterval time.Duration

	// Fanout is how many live peers are gossiped with each round for two
	// rounds after a change (one otherwise). More peers: faster spread,
	// more bytes.
	Fanout int

	// MaxPacketSize bounds every datagram, in bytes, counted on the encoded
	// message. 1400 stays under the 1500-byte Ethernet MTU with room for
	// IP and UDP headers and tunnels.
	MaxPacketSize int

	// NodeSubscriber, if set, is told of joins and leaves (and of every
	// status change, if it implements StatusSubscriber).
	NodeSubscriber NodeSubscriber

	// StateSubscriber, if set, is told of every key change of other nodes
	// (and of deletes, if it implements DeleteSubscriber).
	StateSubscriber StateSubscriber

	// Logger receives debug logs (dropped packets, rounds) and info logs
	// (joins, deaths, leaves). Nil: silent.
	Logger *slog.Logger

	// Transport carries datagrams and streams. Nil: UDP and TCP on BindAddr.
	Transport Transport

	// InitialState holds keys set before the node first gossips, so peers
	// never see this node without them.
	InitialState map[string]string

	// PhiThreshold is the phi above which a silent peer is suspected (and
	// then probed: monitor.go, probe.go). Heartbeat intervals are judged
	// with package failure's normal model, at least a quarter of
	// HeartbeatInterval of deviation: 8 means a silence of the mean
	// interval plus 5.6 deviations, 1.2 s with heartbeats every 500 ms on
	// a clean link, more on a lossy one.
	PhiThreshold float64

	// DetectorWindow is how many heartbeat intervals the failure detector
	// keeps per peer. Zero: package failure's default (100). Simulations of
	// thousands of nodes set it lower to save memory.
	DetectorWindow int

	// TombstoneTTL is how long a deleted key's tombstone is kept (and
	// gossiped) before it is garbage-collected. A peer that was away for
	// longer is repaired with the owner's full state instead of deltas.
	TombstoneTTL time.Duration

	// RemoveAfter is how long a dead or left node's keys stay readable
	// (marked dead or left) before the node is removed and forgotten.
	RemoveAfter time.Duration

	// SeedRetry is the first delay before seeds that did not answer are
	// tried again; it doubles up to MaxSeedRetry.
	SeedRetry time.Duration
	// MaxSeedRetry caps the seed retry backoff.
	MaxSeedRetry time.Duration

	// StreamTimeout bounds a full-state exchange over TCP (dial, write and
	// read), as done when joining through a seed, and a catch-up stream
	// to a peer far behind.
	StreamTimeout time.Duration

	// Generation, if not zero, is this incarnation's generation. Zero: the
	// current Unix time in nanoseconds by Clock, so a restarted node comes
	// back with a higher generation. If the clock went back meanwhile, the
	// node learns the generation the cluster remembers for its ID when it
	// joins, and takes the next one above it.
	Generation uint64

	// Clock is the wall clock: the default Generation, and Node.Now, which
	// the packages built on a node (docker, lease, the daemon) use for
	// every time they write into state. Nil: the host's clock. Durations
	// are never measured on it (see Clock).
	Clock Clock

	// RandSeed seeds the node's random choices (peers, tie breaks).
	// Zero: a random seed.
	RandSeed int64

	// Keyring, if set, encrypts and authenticates every datagram and
	// stream with AES-GCM (its primary key), and refuses any that does not
	// decrypt with one of its keys. Every node of the cluster needs a key
	// in common. Nil: plaintext, which anyone who can reach the port can
	// read and forge. Keys can be installed, made primary and removed while
	// the node runs (Keyring's methods), for rotation with no downtime.
	Keyring *Keyring

	// AcceptPlaintext, with a Keyring, also accepts plaintext datagrams and
	// streams. Off by default. With SendPlaintext, it moves a running
	// cluster to encryption one node at a time (docs/daemon.md): 1) every
	// node gets the key with AcceptPlaintext and SendPlaintext, 2) then
	// without SendPlaintext, 3) then without AcceptPlaintext.
	AcceptPlaintext bool

	// SendPlaintext, with a Keyring and AcceptPlaintext, sends plaintext
	// while accepting both: the first step of a move to encryption.
	SendPlaintext bool

	// Limits on the state peers can make this node hold, so that a
	// misbehaving or compromised peer cannot exhaust its memory. Once one
	// is reached, new nodes and keys are refused (counted in Stats.Refused
	// and logged once per limit); live state is never evicted to make room.
	// A node's own writes past a limit fail with a *LimitError. Zero: the
	// default; negative: no limit.

	// MaxNodes bounds the nodes known, this one included. Default 10,000.
	MaxNodes int
	// MaxKeysPerNode bounds one node's keys, tombstones included. Default
	// 10,000.
	MaxKeysPerNode int
	// MaxNodeBytes bounds one node's state: the sum over its keys of key
	// and value lengths plus EntryOverhead. Default 4 MiB.
	MaxNodeBytes int
	// MaxStateBytes bounds the state of all nodes together, counted as
	// MaxNodeBytes. Default 48 MiB, so that a full state fits in the 64 MiB
	// a stream may carry.
	MaxStateBytes int
}

// EntryOverhead is what one key counts towards MaxNodeBytes and
// MaxStateBytes besides its key and value: about the memory an entry
// takes beyond its strings.
const EntryOverhead = 64

// DefaultLANConfig returns a configuration for nodes in one data centre:
// 200 ms rounds to 3 peers, as memberlist's LAN gossip, a heartbeat every
// 600 ms, detection in about 2 to 3 s, 1400-byte packets.
func DefaultLANConfig() *Config {
	return &Config{
		BindAddr:          "0.0.0.0:8119",
		ClusterID:         "default",
		GossipInterval:    200 * time.Millisecond,
		HeartbeatInterval: 600 * time.Millisecond,
		Fanout:            3,
		MaxPacketSize:     1400,
		PhiThreshold:      8,
		TombstoneTTL:      time.Hour,
		RemoveAfter:       30 * time.Minute,
		SeedRetry:         500 * time.Millisecond,
		MaxSeedRetry:      30 * time.Second,
		StreamTimeout:     10 * time.Second,
		MaxNodes:          10_000,
		MaxKeysPerNode:    10_000,
		MaxNodeBytes:      4 << 20,
		MaxStateBytes:     48 << 20,
	}
}

// DefaultWANConfig returns a configuration for nodes spread across data
// centres: LAN, but 500 ms rounds to 4 peers (higher latency and loss need
// more peers per round and fewer rounds), a heartbeat a second, a higher
// phi threshold, and longer grace periods because partitions last longer.
func DefaultWANConfig() *Config {
	c := DefaultLANConfig()
	c.GossipInterval = 500 * time.Millisecond
	c.HeartbeatInterval = time.Second
	c.Fanout = 4
	c.PhiThreshold = 12
	c.TombstoneTTL = 6 * time.Hour
	c.RemoveAfter = 2 * time.Hour
	c.SeedRetry = time.Second
	c.MaxSeedRetry = time.Minute
	c.StreamTimeout = 30 * time.Second
	return c
}

// DefaultLocalConfig returns a configuration for nodes on one host or a fast
// loopback network: LAN, but 100 ms rounds, a heartbeat every 500 ms and
// short grace periods.
func DefaultLocalConfig() *Config {
	c := DefaultLANConfig()
	c.GossipInterval = 100 * time.Millisecond
	c.HeartbeatInterval = 500 * time.Millisecond
	c.TombstoneTTL = 10 * time.Minute
	c.RemoveAfter = 5 * time.Minute
	c.SeedRetry = 200 * time.Millisecond
	c.MaxSeedRetry = 5 * time.Second
	c.StreamTimeout = 5 * time.Second
	return c
}

// withDefaults returns a copy of c with its zero fields set from the LAN
// defaults, and checks it.
func (c *Config) withDefaults() (Config, error) {
	var out Config
	if c != nil {
		out = *c
	}
	d := DefaultLANConfig()
	if out.BindAddr == "" {
		out.BindAddr = d.BindAddr
	}
	if out.ClusterID == "" {
		out.ClusterID = d.ClusterID
	}
	if out.GossipInterval == 0 {
		out.GossipInterval = d.GossipInterval
	}
	if out.HeartbeatInterval == 0 {
		out.HeartbeatInterval = 3 * out.GossipInterval
	}
	if out.Fanout == 0 {
		out.Fanout = d.Fanout
	}
	if out.MaxPacketSize == 0 {
		out.MaxPacketSize = d.MaxPacketSize
	}
	if out.PhiThreshold == 0 {
		out.PhiThreshold = d.PhiThreshold
	}
	if out.TombstoneTTL == 0 {
		out.TombstoneTTL = d.TombstoneTTL
	}
	if out.RemoveAfter == 0 {
		out.RemoveAfter = d.RemoveAfter
	}
	if out.SeedRetry == 0 {
		out.SeedRetry = d.SeedRetry
	}
	if out.MaxSeedRetry == 0 {
		out.MaxSeedRetry = d.MaxSeedRetry
	}
	if out.StreamTimeout == 0 {
		out.StreamTimeout = d.StreamTimeout
	}
	out.MaxNodes = limitOr(out.MaxNodes, d.MaxNodes)
	out.MaxKeysPerNode = limitOr(out.MaxKeysPerNode, d.MaxKeysPerNode)
	out.MaxNodeBytes = limitOr(out.MaxNodeBytes, d.MaxNodeBytes)
	out.MaxStateBytes = limitOr(out.MaxStateBytes, d.MaxStateBytes)
	return out, out.validate()
}

// limitOr returns a limit's value in force: def for zero, no limit for a
// negative value.
func limitOr(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return math.MaxInt
	}
	return v
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case len(c.ID) > MaxIDSize:
		return bad("ID is %d bytes, the limit is %d", len(c.ID), MaxIDSize)
	case len(c.ClusterID) > MaxIDSize:
		return bad("ClusterID is %d bytes, the limit is %d", len(c.ClusterID), MaxIDSize)
	case c.GossipInterval < time.Millisecond:
		return bad("GossipInterval %v is under 1ms", c.GossipInterval)
	case c.HeartbeatInterval < c.GossipInterval:
		return bad("HeartbeatInterval %v is under GossipInterval %v", c.HeartbeatInterval, c.GossipInterval)
	case c.Fanout < 1:
		return bad("Fanout %d is under 1", c.Fanout)
	case c.MaxPacketSize < MinPacketSize || c.MaxPacketSize > MaxPacketLimit:
		return bad("MaxPacketSize %d is outside [%d, %d]", c.MaxPacketSize, MinPacketSize, MaxPacketLimit)
	case c.PhiThreshold <= 0:
		return bad("PhiThreshold %v is not positive", c.PhiThreshold)
	case c.TombstoneTTL < 0 || c.RemoveAfter < 0:
		return bad("TombstoneTTL and RemoveAfter must not be negative")
	case c.SeedRetry <= 0 || c.MaxSeedRetry < c.SeedRetry:
		return bad("SeedRetry %v must be positive and at most MaxSeedRetry %v", c.SeedRetry, c.MaxSeedRetry)
	case c.Keyring != nil && len(c.Keyring.Keys()) == 0:
		return bad("Keyring has no key")
	case c.Keyring == nil && (c.AcceptPlaintext || c.SendPlaintext):
		return bad("AcceptPlaintext and SendPlaintext need a Keyring")
	case c.SendPlaintext && !c.AcceptPlaintext:
		return bad("SendPlaintext needs AcceptPlaintext: a node that sends plaintext must accept it")
	}
	for k, v := range c.InitialState {
		if err := checkKeyValue(k, v, c.MaxPacketSize); err != nil {
			return bad("InitialState: %v", err)
		}
	}
	return nil
}
