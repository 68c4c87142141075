package scuttlebutt

// Summaries. Two nodes that hold the same generation and version of every
// node's state hold the same state. A summary is a 64-bit hash of that
// (node, generation, version) vector: the XOR of one term per node, so it
// is kept up to date in constant time as versions change, and the terms
// of the nodes a digest carries can be taken out of it. A Syn carries the
// sender's summary less its digest's nodes; the receiver takes the same
// nodes out of its own, and if the two agree, nothing outside the digest
// differs: an idle exchange is one short datagram, with no answer.

// idHash hashes a node ID (FNV-1a, 64 bits).
func idHash(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is SplitMix64's finaliser: every input bit moves every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// summaryTerm is one node's part of a summary.
func summaryTerm(idh, gen, version uint64) uint64 {
	return mix64(idh ^ mix64(gen^mix64(version+0x9e3779b97f4a7c15)))
}

// rehash updates p's term, and the core's summary it is part of, after
// p's generation or version changed.
func (p *peerState) rehash() {
	t := summaryTerm(p.idh, p.gen, p.maxVersion)
	if p.sum != nil {
		*p.sum ^= p.term ^ t
	}
	p.term = t
}

// summaryLess returns the summary less the terms, as held here, of the
// nodes of a digest; nodes not held here have no term.
func (c *Core) summaryLess(es []digestEntry) uint64 {
	s := c.sum
	for i := range es {
		if p := c.peers[es[i].ID]; p != nil {
			s ^= p.term
		}
	}
	return s
}
