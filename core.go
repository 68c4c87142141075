package scuttlebutt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt/failure"
)

// maxStreamSize caps a full-state message read from a stream.
const maxStreamSize = 64 << 20

// gcEvery is how often tombstones are collected.
const gcEvery = time.Second

var errSelf = errors.New("message from this node's own ID")

// removalMemory is how many times RemoveAfter a removed node is remembered.
// A peer that declared the node dead later than this one (it was stalled,
// cut off or simply slower) still holds and gossips it until RemoveAfter
// after its own judgement; a memory of one RemoveAfter would run out while
// such a peer still gossips the node, and the node would come back to life
// here. Two cover peers that lag by up to RemoveAfter.
const removalMemory = 2

// removal remembers a removed node, so that a lagging peer cannot bring its
// old state back. It is kept for removalMemory times RemoveAfter.
type removal struct {
	gen     uint64
	version uint64
	until   time.Time
}

// Core is the gossip protocol as a state machine, in the manner of etcd's
// raft RawNode: it has no sockets, goroutines or clock of its own. Time and
// input go in through Tick, Step and the local updates; datagrams to send
// and events to announce come out of Ready. Node wraps a Core with a
// transport, timers and subscribers; a simulation can step thousands of
// Cores on one goroutine.
//
// A Core is not safe for concurrent use.
type Core struct {
	cfg       Config
	id        string
	rng       *rand.Rand
	self      *peerState
	peers     map[string]*peerState // every known node, this one included
	order     []*peerState          // peers sorted by ID: the digest rotation
	cursor    int
	recent    []recentChange
	mark      uint64
	detector  *failure.Detector
	removed   map[string]removal
	pulls     []digestEntry // wants to send: nodes we know we lack
	seeds     []string
	round     uint64
	newsRound uint64 // the last round a SynAck asked for what this node sent
	phase     uint64 // of the rounds that send the heartbeat (monitor.go)
	lastGC    time.Time

	leaving   uint64          // version of keyLeft once Leave began
	leaveAcks map[string]bool // peers that hold it

	live, dead []string // scratch of targets

	sum uint64 // the summary: XOR of every node's term (summary.go)

	// Monitoring (monitor.go).
	ring        []*peerState       // alive nodes and this one, by ringKey
	ringDirty   bool               // ring, monitors and watched need recomputing
	monitors    []*peerState       // whom this node sends its heartbeat to: its successor (and dead nodes before it)
	watched     []*peerState       // whom this node judges: its predecessors
	pending     map[string]verdict // verdicts on nodes not known yet
	lastInbound time.Time          // the last valid message from a peer
	lastTick    time.Time
	isolated    bool // asked helpers and heard no one (monitor.go)
	resyncing   bool // no longer isolated, not yet in sync
	refutations uint64
	probes      map[uint64]*peerState // suspicions in progress, by nonce (probe.go)
	helping     []helpReq             // probes made for others
	alarmUntil  time.Time             // suspecting lately: probe the newly watched at once
	antiEntropy bool                  // the next Syn carries a rotation of the digest

	catchUps     map[string]*catchUpState // rate limits of catch-ups, by peer ID (catchup.go)
	busyCatchUps int                      // catch-ups in flight
	catchUpOut   []CatchUp
	lastRevival  time.Time // when a dead node was last revived here (catchup.go)

	stateBytes int             // entrySize over every node's keys (limits.go)
	limitsHit  map[string]bool // limits already reported by an EventLimit

	aad      []byte // what every envelope authenticates (envelope.go)
	maxPlain int    // the largest encoded message: MaxPacketSize less the envelope when sealing

	out    []Outgoing
	events []Event
	stats  coreStats
	buf    bytes.Buffer
}

type coreStats struct {
	Stats
	gaps uint64
}

// NewCore returns a core for a node advertising addr, started at now.
// cfg is completed with defaults and checked; cfg.ID must not be empty.
func NewCore(cfg *Config, addr string, now time.Time) (*Core, error) {
	full, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if full.ID == "" {
		return nil, fmt.Errorf("%w: empty ID", ErrInvalidConfig)
	}
	gen := full.Generation
	if gen == 0 {
		gen = uint64(now.UnixNano())
	}
	seed := uint64(full.RandSeed)
	if seed == 0 {
		seed = rand.Uint64()
	}
	c := &Core{
		cfg:      full,
		id:       full.ID,
		rng:      rand.New(rand.NewPCG(seed, gen)),
		peers:    make(map[string]*peerState),
		removed:  make(map[string]removal),
		detector: failure.New(full.detectorConfig()),
		lastGC:   now,
		aad:      additionalData(full.ClusterID),
		pending:  make(map[string]verdict),
		probes:   make(map[uint64]*peerState),
		catchUps: make(map[string]*catchUpState),

		lastInbound: now,
		lastTick:    now,
	}
	c.phase = c.rng.Uint64N(c.heartbeatRounds())
	c.maxPlain = full.MaxPacketSize
	if c.sealing() {
		c.maxPlain -= EnvelopeOverhead
	}
	c.stats.Dropped = make(map[string]uint64)
	c.stats.Refused = make(map[string]uint64)
	c.limitsHit = make(map[string]bool)
	c.self = c.addPeer(now, c.id, gen)
	c.self.status = StatusAlive
	if addr != "" {
		c.setLocal(now, keyAddr, addr, false)
	}
	keys := make([]string, 0, len(full.InitialState))
	for k := range full.InitialState {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c.setLocal(now, k, full.InitialState[k], false)
	}
	return c, nil
}

// detectorConfig derives the failure detector's settings from the
// heartbeat interval: the normal model with a prior of one interval and a
// deviation of at least a quarter of it; recorded intervals are capped at
// four (one long silence must not make the deviation, and so detection,
// slow for the whole window); a local stall of 10 rounds (at least a
// second) triggers the pause guard.
//
// The detector judges only the peer this node monitors, whose heartbeats
// come straight to it at regular intervals (monitor.go): sparse and
// regular, what the normal model suits (the exponential one would need
// 18 intervals of silence at phi 8). On a lossy link the deviation grows,
// and suspicions with it come later.
func (c *Config) detectorConfig() failure.Config {
	fc := failure.Config{
		Threshold:       c.PhiThreshold,
		Distribution:    failure.Normal,
		InitialInterval: c.HeartbeatInterval,
		MinStdDeviation: c.HeartbeatInterval / 4,
		MaxInterval:     4 * c.HeartbeatInterval,
		PauseThreshold:  max(time.Second, 10*c.GossipInterval), // Core.detectorPause
	}
	if c.DetectorWindow > 0 {
		fc.WindowSize = c.DetectorWindow
		fc.MinSamples = min(2, c.DetectorWindow)
	}
	return fc
}

// ID returns the node's ID.
func (c *Core) ID() string { return c.id }

// Generation returns this incarnation's generation.
func (c *Core) Generation() uint64 { return c.self.gen }

func (c *Core) addPeer(now time.Time, id string, gen uint64) *peerState {
	p := newPeerState(id, gen)
	p.total = &c.stateBytes
	p.sum = &c.sum
	p.rehash()
	p.since = now
	c.peers[id] = p
	i, _ := slices.BinarySearchFunc(c.order, id, byID)
	c.order = slices.Insert(c.order, i, p)
	c.markRing()
	if id != c.id {
		c.noteChange(id)
	}
	return p
}

// heard records a heartbeat of a watched peer: the failure detector gets
// the arrival, and the peer's deadline (before which judge skips it) is
// renewed. Every heartbeat goes through here, so the deadline is never
// stale.
func (c *Core) heard(now time.Time, p *peerState) {
	p.lastHeard = now
	c.detector.Heartbeat(p.id, now)
	p.deadline = c.deadline(p.id)
}

func (c *Core) removePeer(id string) {
	if p := c.peers[id]; p != nil {
		p.account(-p.bytes)
		c.sum ^= p.term
		p.sum = nil
	}
	c.markRing()
	if p := c.peers[id]; p != nil {
		c.endProbe(p)
	}
	delete(c.peers, id)
	if i, ok := slices.BinarySearchFunc(c.order, id, byID); ok {
		c.order = slices.Delete(c.order, i, i+1)
	}
	c.detector.Forget(id)
}

func byID(p *peerState, id string) int { return strings.Compare(p.id, id) }

func (c *Core) isRemoved(e digestEntry) bool {
	r, ok := c.removed[e.ID]
	if !ok {
		return false
	}
	if e.Gen > r.gen || (e.Gen == r.gen && e.MaxVersion > r.version) {
		delete(c.removed, e.ID) // really back
		return false
	}
	return true
}

func (c *Core) emit(e Event) { c.events = append(c.events, e) }

// Ready returns the datagrams and events produced since the last call.
func (c *Core) Ready() Ready {
	r := Ready{Messages: c.out, Events: c.events, CatchUps: c.catchUpOut}
	c.out, c.events, c.catchUpOut = nil, nil, nil
	return r
}

// Set sets one of this node's keys. Setting a key to the value it has
// changes nothing.
func (c *Core) Set(now time.Time, key, value string) error {
	if err := checkKeyValue(key, value, c.cfg.MaxPacketSize); err != nil {
		return err
	}
	if limit, ok := c.overLimit(c.self, key, value); !ok {
		return &LimitError{Limit: limit}
	}
	c.setLocal(now, key, value, false)
	return nil
}

// Delete deletes one of this node's keys, leaving a tombstone that spreads
// like a value. Deleting a missing key changes nothing.
func (c *Core) Delete(now time.Time, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	c.setLocal(now, key, "", true)
	return nil
}

func (c *Core) setLocal(now time.Time, key, value string, deleted bool) {
	old, ok := c.self.keys[key]
	if deleted && (!ok || old.deleted) || !deleted && ok && !old.deleted && old.value == value {
		return
	}
	c.self.put(&entry{key: key, value: value, deleted: deleted, version: c.self.maxVersion + 1}, now)
	c.noteChange(c.id)
}

// Leave marks this node as leaving; peers mark it left when they hear.
// LeaveAcked tells how many peers have heard.
func (c *Core) Leave(now time.Time) {
	if c.leaving == 0 {
		c.setLocal(now, keyLeft, "1", false)
		c.leaving = c.self.maxVersion
		c.leaveAcks = make(map[string]bool)
	}
}

// LeaveAcked returns how many peers are known to hold this node's
// departure.
func (c *Core) LeaveAcked() int { return len(c.leaveAcks) }

// AddSeeds adds addresses to gossip with when no live peer is known, and
// now and then otherwise, so that partitions heal.
func (c *Core) AddSeeds(addrs []string) {
	for _, a := range addrs {
		if !slices.Contains(c.seeds, a) {
			c.seeds = append(c.seeds, a)
		}
	}
}

// Seeds returns the seed addresses.
func (c *Core) Seeds() []string { return slices.Clone(c.seeds) }

// Tick runs one gossip round at now: judge the node it watches, collect
// tombstones, send the heartbeat if this round is one of its rounds, and
// send Syns: to Fanout live peers while changes spread, to one when a
// difference is left to find or wants to ask, to none otherwise (and
// sometimes to a dead peer or a seed).
func (c *Core) Tick(now time.Time) {
	c.round++
	c.stats.Rounds++
	c.self.heartbeat++
	c.self.lastHeard = now
	if gap := now.Sub(c.lastTick); gap > c.detectorPause() {
		// This node stalled: the silence was its own, not its peers'.
		c.lastInbound = c.lastInbound.Add(gap)
	}
	c.lastTick = now
	c.detector.Tick(now)
	c.updateRing(now)
	c.judge(now)
	if now.Sub(c.lastGC) >= gcEvery {
		c.lastGC = now
		for _, p := range c.order {
			p.collect(now, c.cfg.TombstoneTTL)
		}
		for id, r := range c.removed {
			if now.After(r.until) {
				delete(c.removed, id)
			}
		}
		c.withdrawVerdicts(now)
		c.forgetCatchUps(now)
	}
	c.pruneRecent()
	c.updateRing(now)
	rotate := c.antiEntropy
	c.antiEntropy = false
	sent := false
	if (c.heartbeatDue() || c.pushedOut()) && len(c.monitors) > 0 {
		rotate = !c.sendHeartbeats(rotate) && rotate
		sent = true
	}
	for _, to := range c.targets(rotate || (!sent && len(c.pulls) > 0)) {
		c.sendSynWithin(to, rotate, freshRounds)
		rotate = false
		sent = true
	}
	if sent {
		// The wants gathered since the last round went out.
		c.pulls = c.pulls[:0:0]
	}
}

// pushing tells whether this round pushes to Fanout peers: while this
// node leaves, and in the first round after a change (made or received);
// in the rounds after that up to freshRounds only if the last round's
// pushes were news to someone (a SynAck with wants came back: rumour
// mongering with feedback), so that the pushes stop where the change is
// known already.
func (c *Core) pushing() bool {
	if c.leaving != 0 {
		return true
	}
	n := len(c.recent)
	if n == 0 {
		return false
	}
	age := c.round - c.recent[n-1].round
	return age <= 1 || age < freshRounds && c.newsRound+1 >= c.round
}

// pushedOut tells whether the random pushes of the last change ended with
// the last round: this round's heartbeat goes early, so that a node
// the pushes missed gets the change from its predecessor on the ring at
// once rather than at the predecessor's next heartbeat.
func (c *Core) pushedOut() bool {
	n := len(c.recent)
	return n > 0 && c.round-c.recent[n-1].round == freshRounds
}

// detectorPause is the stall of this node after which its silence is not
// held against anyone.
func (c *Core) detectorPause() time.Duration {
	return max(time.Second, 10*c.cfg.GossipInterval)
}

// targets picks this round's peers: Fanout random live ones while this
// node pushes a change or leaves (pushing), one with need (a difference
// to find, wants to ask), none otherwise; one dead one
// with probability dead/(live+1) (chitchat's rule, so partitions heal);
// the seeds when no peer is alive, else one seed with probability
// 1/(live+1).
func (c *Core) targets(need bool) []string {
	live, dead := c.live[:0], c.dead[:0]
	defer func() { c.live, c.dead = live[:0], dead[:0] }()
	for _, p := range c.order {
		if p == c.self || p.addr == "" {
			continue
		}
		switch p.status {
		case StatusAlive:
			live = append(live, p.addr)
		case StatusDead:
			dead = append(dead, p.addr)
		}
	}
	fanout := 0
	if c.pushing() {
		fanout = c.cfg.Fanout
	} else if need {
		fanout = 1
	}
	n := min(fanout, len(live))
	for i := range n {
		j := i + c.rng.IntN(len(live)-i)
		live[i], live[j] = live[j], live[i]
	}
	out := slices.Clone(live[:n])
	if len(dead) > 0 && c.rng.Float64() < float64(len(dead))/float64(len(live)+1) {
		out = append(out, dead[c.rng.IntN(len(dead))])
	}
	self := c.self.addr
	if len(live) == 0 {
		for _, s := range c.seeds {
			if s != self {
				out = append(out, s)
			}
		}
	} else if len(c.seeds) > 0 && c.rng.Float64() < 1/float64(len(live)+1) {
		if s := c.seeds[c.rng.IntN(len(c.seeds))]; s != self && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// judge convicts the watched peers whose phi passed the threshold (unless
// this node is isolated: then every peer is dead here, and only here), and
// removes dead or left peers after RemoveAfter.
func (c *Core) judge(now time.Time) {
	c.expireHelping(now)
	for _, p := range c.watched { // convicting marks the ring, does not recompute it
		if p.status != StatusAlive {
			continue
		}
		if p.probe != nil {
			c.judgeProbe(now, p)
			continue
		}
		if p.unheard && !now.Before(p.probeAt) {
			p.unheard = false
			c.suspect(now, p)
			continue
		}
		// The deadline is a lower bound of the time phi passes the
		// threshold, renewed at each heartbeat: most peers are judged
		// by one comparison.
		if !now.After(p.deadline) {
			continue
		}
		if c.detector.Suspect(p.id, now) {
			c.suspect(now, p) // convicted only if helpers confirm (probe.go)
		} else {
			p.deadline = c.deadline(p.id)
		}
	}
	var gone []string
	for _, p := range c.order {
		if p != c.self && (p.status == StatusDead || p.status == StatusLeft) && now.Sub(p.since) >= c.cfg.RemoveAfter {
			gone = append(gone, p.id)
		}
	}
	for _, id := range gone {
		p := c.peers[id]
		for _, e := range p.byVersion {
			if !e.deleted && !isReserved(e.key) {
				c.emit(Event{Kind: EventDelete, NodeID: id, Key: e.key})
			}
		}
		c.removed[id] = removal{gen: p.gen, version: p.maxVersion, until: now.Add(removalMemory * c.cfg.RemoveAfter)}
		c.setStatus(now, p, StatusRemoved)
		c.removePeer(id)
	}
}

// deadline returns the time after which the detector may suspect a peer,
// if no heartbeat comes first; never for a peer it has not heard.
func (c *Core) deadline(id string) time.Time {
	if d, ok := c.detector.Deadline(id); ok {
		return d
	}
	return maxTime
}

// maxTime is later than any time a Core sees.
var maxTime = time.Unix(1<<62, 0)

// statusOf is the status a peer's state implies once it is heard from.
func (c *Core) statusOf(p *peerState) Status {
	if p.left {
		return StatusLeft
	}
	return StatusAlive
}

// updateStatus follows a peer's state: it is left once its departure key
// arrives, and alive again once a version newer than its verdict does.
func (c *Core) updateStatus(now time.Time, p *peerState) {
	switch {
	case p.left:
		if p.status != StatusLeft {
			c.setStatus(now, p, StatusLeft)
		}
	case p.status == StatusDead && p.deadBy == causeVerdict && p.maxVersion > p.deadVersion:
		p.deadBy = causeNone
		c.setStatus(now, p, StatusAlive)
	}
}

func (c *Core) setStatus(now time.Time, p *peerState, to Status) {
	from := p.status
	if from == to {
		return
	}
	p.status, p.since = to, now
	if to != StatusDead {
		p.deadBy = causeNone
	}
	c.markRing()
	if from == StatusDead {
		c.lastRevival = now
		c.withdrawVerdict(now, p) // monitor.go
	}
	c.emit(Event{Kind: EventStatus, NodeID: p.id, From: from, To: to})
	switch {
	case to == StatusAlive:
		c.emit(Event{Kind: EventJoin, NodeID: p.id})
	case from == StatusAlive && (to == StatusDead || to == StatusLeft):
		c.emit(Event{Kind: EventLeave, NodeID: p.id})
	}
}

// noteAck counts a peer whose digest shows it holds this node's departure.
func (c *Core) noteAck(from string, e *digestEntry) {
	if e.ID == c.id && c.leaving != 0 && e.Gen == c.self.gen && e.MaxVersion >= c.leaving {
		c.leaveAcks[from] = true
	}
}

// Step takes one datagram received at now from addr. A datagram that is
// not a valid message of this cluster is dropped, counted by reason, and
// its error returned; nothing else changes.
func (c *Core) Step(now time.Time, addr string, data []byte) error {
	c.stats.PacketsIn++
	c.stats.BytesIn += uint64(len(data))
	var m *message
	plain, err := c.unwrap(data)
	if err == nil {
		m, err = decodeMessage(plain, c.cfg.MaxPacketSize, c.cfg.ClusterID)
	}
	if err == nil && (m.Type == msgFull || m.Type == msgCatchUp) {
		err = fmt.Errorf("%w: %v in a datagram", errBadType, m.Type)
	}
	if err == nil && m.From == c.id {
		err = errSelf
	}
	if err != nil {
		c.stats.Dropped[dropReason(err)]++
		return err
	}
	c.inbound(now)
	if p := c.peers[m.From]; p != nil {
		p.lastMsg = now
		if m.Type == msgSyn || m.Type == msgSynAck || m.Type == msgAck {
			c.healing(now, addr, p) // catchup.go
		}
	}
	switch m.Type {
	case msgSyn:
		c.onHeartbeat(now, m)
		c.onSyn(now, addr, m)
	case msgSynAck:
		c.onSynAck(now, addr, m)
	case msgAck:
		c.onAck(now, addr, m)
	case msgPing:
		c.onHeartbeat(now, m)
	case msgProbe:
		c.onProbe(addr, m)
	case msgProbeAck:
		c.onProbeAck(now, m)
	case msgPingReq:
		c.onPingReq(now, addr, m)
	case msgProbeNack:
		c.onProbeNack(m)
	}
	return nil
}

func (c *Core) applyDeltas(now time.Time, m *message) {
	for i := range m.Deltas {
		c.applyDelta(now, &m.Deltas[i])
	}
}

// onSyn answers a Syn: deltas where we are ahead of its digest, wants
// where we are behind. If its summary agrees with ours, nothing outside
// its digest differs, and if nothing inside does either, there is no
// answer at all: the idle exchange is one datagram. If the summaries
// differ, the SynAck says so and carries our own recent changes (what is
// spreading here may be the difference), or, when there are none and the
// digest showed no difference, a rotation of our digest.
func (c *Core) onSyn(now time.Time, addr string, m *message) {
	var reqs []deltaRequest
	var wants []digestEntry
	mark := c.newMark()
	for i := range m.Digest {
		e := &m.Digest[i]
		c.noteAck(m.From, e)
		p := c.peers[e.ID]
		if p != nil {
			p.mark = mark // the sender has told its own: no need to tell it ours
		}
		if r, send, w, want := c.comparePeer(*e, p); send {
			reqs = append(reqs, r)
		} else if want {
			wants = append(wants, w)
		}
	}
	agree := m.Summary == c.summaryLess(m.Digest)
	differ := len(reqs) > 0 || len(wants) > 0
	reqs = c.wantedBy(reqs, m.Wants)
	reply := message{Type: msgSynAck, Cluster: c.cfg.ClusterID, From: c.id, Gen: c.self.gen}
	if !agree {
		reply.Summary |= summaryDiffer
	}
	budget := c.maxPlain - messageHeaderSize(msgSynAck, reply.Cluster, reply.From, reply.Gen)
	reply.Wants, budget = fitEntries(wants, budget-maxArrayHeader, budget/4)
	reserve := 0
	if !agree {
		reserve = min(budget/4, 1+len(c.order)*(MaxIDSize+40))
	}
	c.catchUp(now, addr, m.From, reqs, m.Digest, m.Wants)
	var used int
	reply.Deltas, used = c.buildDeltas(reqs, budget-reserve)
	budget -= used
	obits, used := c.obituaries(m.Digest, budget-reserve) // obituary.go
	reply.Deltas = append(reply.Deltas, obits...)
	budget -= used
	// A leaving sender learns that we hold its departure.
	var echo *peerState
	if p := c.peers[m.From]; p != nil && p.left && p.mark == mark {
		echo = p
		p.mark = 0
	}
	switch {
	case !agree:
		// Our recent changes in half the room; a rotation in the rest
		// when they do not all fit (a burst: it must not starve the
		// search for other differences) or when nothing explains the
		// difference.
		room := budget - maxArrayHeader
		d, used := c.fillDigest(nil, room/2, mark, echo, false)
		if !differ && len(d) == 0 || c.recentUnmarked(mark) {
			d, _ = c.fillDigest(d, room-used, mark, nil, true)
		}
		reply.Digest = d
	case echo != nil:
		reply.Digest = []digestEntry{echo.digest()}
	}
	if agree {
		c.resynced(now)
		if len(reply.Deltas) == 0 && len(reply.Wants) == 0 && len(reply.Digest) == 0 {
			return
		}
	}
	c.send(addr, &reply)
}

// wantedBy adds requests for the nodes a peer said it lacks.
func (c *Core) wantedBy(reqs []deltaRequest, wants []digestEntry) []deltaRequest {
	for _, w := range wants {
		p := c.peers[w.ID]
		if p == nil {
			continue
		}
		if r, ok := c.deltaFor(p, w); ok && !slices.ContainsFunc(reqs, func(q deltaRequest) bool { return q.p == p }) {
			reqs = append(reqs, r)
		}
	}
	return reqs
}

// fitEntries returns the longest prefix of es within limit bytes, and the
// budget left.
func fitEntries(es []digestEntry, budget, limit int) ([]digestEntry, int) {
	used := 0
	for i := range es {
		n := es[i].size()
		if used+n > limit {
			es = es[:i]
			break
		}
		used += n
	}
	return es, budget - used
}

// onSynAck applies the deltas, then answers the wants and the digest with
// an Ack: deltas where we are ahead, wants where we are behind. A SynAck
// that reports different summaries and shows no difference in its digest
// leaves the difference unexplained: our next Syn carries a rotation of
// our digest, which finds it.
func (c *Core) onSynAck(now time.Time, addr string, m *message) {
	if len(m.Wants) > 0 {
		c.newsRound = c.round
	}
	c.applyDeltas(now, m)
	reqs := c.wantedBy(nil, m.Wants)
	var wants []digestEntry
	explained := false
	for i := range m.Digest {
		e := &m.Digest[i]
		c.noteAck(m.From, e)
		p := c.peers[e.ID]
		if r, send, w, want := c.comparePeer(*e, p); send {
			explained = true
			if !slices.ContainsFunc(reqs, func(q deltaRequest) bool { return q.p == r.p }) {
				reqs = append(reqs, r)
			}
		} else if want {
			explained = true
			wants = append(wants, w)
		}
	}
	if m.Summary&summaryDiffer != 0 && !explained {
		c.antiEntropy = true
	}
	obits, obitBytes := c.obituaries(m.Digest, c.maxPlain/4) // obituary.go
	if len(reqs) == 0 && len(wants) == 0 && len(obits) == 0 {
		return
	}
	ack := message{Type: msgAck, Cluster: c.cfg.ClusterID, From: c.id, Gen: c.self.gen}
	budget := c.maxPlain - messageHeaderSize(msgAck, ack.Cluster, ack.From, ack.Gen)
	ack.Wants, budget = fitEntries(wants, budget-maxArrayHeader, budget/4)
	for _, w := range wants[len(ack.Wants):] {
		c.addPull(w) // asked for in the next Syn
	}
	c.catchUp(now, addr, m.From, reqs, m.Digest, m.Wants)
	ack.Deltas, _ = c.buildDeltas(reqs, budget-obitBytes)
	ack.Deltas = append(ack.Deltas, obits...)
	if len(ack.Deltas) > 0 || len(ack.Wants) > 0 {
		c.send(addr, &ack)
	}
}

// onAck applies the deltas, and answers the wants, if any, with a last Ack
// of deltas only.
func (c *Core) onAck(now time.Time, addr string, m *message) {
	c.applyDeltas(now, m)
	reqs := c.wantedBy(nil, m.Wants)
	if len(reqs) == 0 {
		return
	}
	ack := message{Type: msgAck, Cluster: c.cfg.ClusterID, From: c.id, Gen: c.self.gen}
	budget := c.maxPlain - messageHeaderSize(msgAck, ack.Cluster, ack.From, ack.Gen)
	c.catchUp(now, addr, m.From, reqs, m.Wants)
	ack.Deltas, _ = c.buildDeltas(reqs, budget)
	if len(ack.Deltas) > 0 {
		c.send(addr, &ack)
	}
}

// maxPulls bounds the wants carried by a Syn.
const maxPulls = 16

func (c *Core) addPull(w digestEntry) {
	if len(c.pulls) >= maxPulls || slices.ContainsFunc(c.pulls, func(q digestEntry) bool { return q.ID == w.ID }) {
		return
	}
	c.pulls = append(c.pulls, w)
}

// sendSyn opens an exchange with addr: wants, this node's recent changes
// (with rotate, also a rotation of the rest of its digest), and the
// summary of all it holds less the digest's nodes.
func (c *Core) sendSyn(addr string, rotate bool) { c.sendSynWithin(addr, rotate, hotRounds) }

// sendSynWithin is sendSyn with the recent changes of the last age rounds
// only: a push to a random peer carries what is being pushed (the last
// freshRounds), a heartbeat all hot changes, for its receiver to pull
// what it missed. (The summary covers the rest either way.)
func (c *Core) sendSynWithin(addr string, rotate bool, age uint64) {
	m := message{Type: msgSyn, Cluster: c.cfg.ClusterID, From: c.id, Gen: c.self.gen}
	budget := c.maxPlain - messageHeaderSize(msgSyn, m.Cluster, m.From, m.Gen)
	m.Wants, budget = fitEntries(c.pulls, budget-maxArrayHeader, budget/4)
	if rotate {
		age = hotRounds
	}
	m.Digest, _ = c.fillDigestWithin(nil, budget-maxArrayHeader, c.newMark(), nil, rotate, age)
	m.Summary = c.summaryLess(m.Digest)
	c.send(addr, &m)
}

// send encodes m into the outbox, sealed if this node encrypts. A message
// over MaxPacketSize is a bug of the budget arithmetic: it is counted and
// not sent.
func (c *Core) send(addr string, m *message) {
	c.buf.Reset()
	b, err := m.encode(&c.buf)
	if err != nil || len(b) > c.maxPlain {
		c.stats.Dropped["oversize_out"]++
		return
	}
	data := c.wrap(b)
	c.out = append(c.out, Outgoing{To: addr, Data: data})
	c.stats.PacketsOut++
	c.stats.BytesOut += uint64(len(data))
	c.stats.MaxPacketBytes = max(c.stats.MaxPacketBytes, len(data))
}

// FullState encodes everything this node holds, for a stream: the reply to
// a joining node, or a joining node's own state.
func (c *Core) FullState() ([]byte, error) {
	m := message{Type: msgFull, Cluster: c.cfg.ClusterID, From: c.id, Gen: c.self.gen}
	for _, p := range c.order {
		m.Digest = append(m.Digest, p.digest())
		d := nodeDelta{ID: p.id, Gen: p.gen, Reset: true, MaxVersion: p.maxVersion, LastGC: p.lastGC, Dead: p.deadMark()}
		for _, e := range p.byVersion {
			d.Entries = append(d.Entries, wireEntry{Key: e.key, Value: e.value, Version: e.version, Deleted: e.deleted})
		}
		m.Deltas = append(m.Deltas, d)
	}
	m.Digest = c.appendRemoved(m.Digest) // generation.go
	var buf bytes.Buffer
	b, err := m.encode(&buf)
	if err == nil && len(b)+EnvelopeOverhead > maxStreamSize {
		err = fmt.Errorf("%w: full state of %d bytes", errTooLarge, len(b))
	}
	c.stats.StreamsOut++
	if err != nil {
		return nil, err
	}
	return c.wrap(b), nil
}

// StepFull applies a full state received over a stream, and returns the
// sender's ID.
func (c *Core) StepFull(now time.Time, data []byte) (string, error) {
	c.stats.StreamsIn++
	var m *message
	plain, err := c.unwrap(data)
	if err == nil {
		m, err = decodeMessage(plain, maxStreamSize, c.cfg.ClusterID)
	}
	if err == nil && m.Type != msgFull {
		err = fmt.Errorf("%w: %v on a stream", errBadType, m.Type)
	}
	if err == nil && m.From == c.id {
		err = errSelf
	}
	if err != nil {
		c.stats.Dropped["stream_"+dropReason(err)]++
		return "", err
	}
	c.applyDeltas(now, m)
	c.outliveRemoved(m.Digest) // generation.go
	return m.From, nil
}
