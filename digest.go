package scuttlebutt

// Digests. A digest entry says which generation and version of a node's
// state the sender holds. A full digest of a large cluster does not fit in
// a datagram (about 50 entries do at 1400 bytes), and most of the time it
// would say nothing new: a summary (summary.go) proves agreement in 8
// bytes. So a digest carries, in this order:
//
//  1. in a SynAck to a leaving node, its entry as held here (it counts the
//     peers that hold its departure); this node's own entry while it
//     leaves;
//  2. nodes whose state changed here in the last hotRounds rounds, newest
//     first: what is spreading now is compared first;
//  3. with a rotation only (when summaries differ and nothing recent
//     explains it), the rest: a cursor walks all known nodes in ID order,
//     so any difference left is found a digest at a time.
//
// Because a digest is partial, a missing entry says nothing: only the
// entries present are compared. Nodes a receiver does not know are found in
// entries it receives and asked for with a want (a digest entry of
// generation 0).

// hotRounds is how long a changed node stays in digests: an update
// reaches 1,000 nodes in about 6 rounds, and a node that has not got it
// finds it in the digests of those that have, its predecessor's next
// heartbeat at the latest (5 rounds with the local preset). Longer costs
// bytes: every Syn carries every hot entry (8 rounds cost 5 % more while
// updates flow).
const hotRounds = 6

// freshRounds bounds how long after a change a node pushes it to Fanout
// random peers a round (Core.pushing): the rounds up to freshRounds - 1
// after it, the second only if the first was news to someone. The push
// carries an update to most nodes in log(N)/log(Fanout+1) rounds; in
// round freshRounds the node's heartbeat goes early to its ring successor,
// and the last nodes find it in the digests of the hot nodes they hear.
const freshRounds = 3

// recentChange records that a node's state changed here in a round.
type recentChange struct {
	id    string
	round uint64
}

// noteChange puts a node at the front of the next digests.
func (c *Core) noteChange(id string) {
	c.recent = append(c.recent, recentChange{id: id, round: c.round})
}

// pruneRecent forgets changes older than hotRounds.
func (c *Core) pruneRecent() {
	i := 0
	for i < len(c.recent) && c.round-c.recent[i].round > hotRounds {
		i++
	}
	if i > 0 {
		n := copy(c.recent, c.recent[i:])
		clear(c.recent[n:])
		c.recent = c.recent[:n]
	}
}

// newMark starts a digest selection: nodes marked with it are not added.
func (c *Core) newMark() uint64 {
	c.mark++
	return c.mark
}

// fillDigest appends digest entries to dst, at most budget bytes of them,
// skipping nodes already marked with mark and marking those it adds: echo
// first if not nil, this node's own entry while it leaves, then the recent
// changes, newest first; with rotate, the rest in rotation after them.
// It returns the entries and the bytes they take.
func (c *Core) fillDigest(dst []digestEntry, budget int, mark uint64, echo *peerState, rotate bool) ([]digestEntry, int) {
	return c.fillDigestWithin(dst, budget, mark, echo, rotate, hotRounds)
}

// fillDigestWithin is fillDigest with the recent changes of the last age
// rounds only.
func (c *Core) fillDigestWithin(dst []digestEntry, budget int, mark uint64, echo *peerState, rotate bool, age uint64) ([]digestEntry, int) {
	used := 0
	limit := budget
	add := func(p *peerState) bool {
		if p.mark == mark {
			return true
		}
		e := p.digest()
		n := e.size()
		if used+n > limit {
			return false
		}
		p.mark = mark
		dst = append(dst, e)
		used += n
		return true
	}
	if echo != nil && !add(echo) {
		return dst, used
	}
	if c.leaving != 0 && !add(c.self) {
		return dst, used
	}
	// With a rotation, recent changes take at most half of what is left,
	// so that the rotation always advances: a burst of changes (a join
	// of many nodes) must not starve the search for other differences.
	if rotate {
		limit = used + (budget-used)/2
	}
	for i := len(c.recent) - 1; i >= 0 && c.round-c.recent[i].round <= age; i-- {
		if p := c.peers[c.recent[i].id]; p != nil && !add(p) {
			break
		}
	}
	if !rotate {
		return dst, used
	}
	limit = budget
	for range len(c.order) {
		if c.cursor >= len(c.order) {
			c.cursor = 0
		}
		if !add(c.order[c.cursor]) {
			return dst, used
		}
		c.cursor++
	}
	return dst, used
}

// recentUnmarked tells whether a recently changed node is not marked.
func (c *Core) recentUnmarked(mark uint64) bool {
	for _, r := range c.recent {
		if p := c.peers[r.id]; p != nil && p.mark != mark {
			return true
		}
	}
	return false
}

// compare sets what to do about one entry of a peer's digest: send it a
// delta (we are ahead) or want one (we are behind or do not know the node).
// Of this node's own state, the peer gets a delta if it is behind; we never
// want our own state.
func (c *Core) compare(e digestEntry) (req deltaRequest, send bool, want digestEntry, wanted bool) {
	return c.comparePeer(e, c.peers[e.ID])
}

// comparePeer is compare with the entry's node already looked up (nil if
// unknown): a thousand-node digest costs one map lookup per entry.
func (c *Core) comparePeer(e digestEntry, p *peerState) (req deltaRequest, send bool, want digestEntry, wanted bool) {
	if e.ID == c.id {
		c.outlive(e.Gen) // a previous life of this node, if higher (generation.go)
		req, send = c.deltaFor(c.self, e)
		return req, send, want, false
	}
	if c.isRemoved(e) {
		return req, false, want, false
	}
	if p == nil {
		return req, false, digestEntry{ID: e.ID}, true
	}
	switch {
	case e.Gen > p.gen:
		return req, false, p.digest(), true
	case e.Gen == p.gen && e.MaxVersion > p.maxVersion:
		return req, false, p.digest(), true
	}
	req, send = c.deltaFor(p, e)
	return req, send, want, false
}
