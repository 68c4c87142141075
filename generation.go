package scuttlebutt

import (
	"math"
	"slices"
)

// A node's generation defaults to its start time by its clock. Restarted
// after its clock was set back, a node would have a lower generation than
// its previous life, which peers still hold (dead, or alive until they
// notice): they would ignore it as old until they removed the old life.
// Instead, a node that hears of its own ID with a higher generation than
// its own, in a join's full state, a delta or a digest, takes the next
// generation above it. Its peers then replace the old life's state with
// the new one's at once, as for any restart. A life already removed is
// remembered (removalMemory) but no longer gossiped: a full state carries
// the remembered generations in its digest, so that a node joining through
// a peer that remembers its previous life learns of it too.

// outlive raises this node's generation above gen, a generation the
// cluster holds for this node's ID, if gen is not below it already.
func (c *Core) outlive(gen uint64) {
	if gen <= c.self.gen || gen == math.MaxUint64 {
		return
	}
	c.self.gen = gen + 1
	c.self.rehash()
	c.noteChange(c.id)
}

// appendRemoved adds to the digest of a full state the removed nodes this
// node remembers, with their generations.
func (c *Core) appendRemoved(d []digestEntry) []digestEntry {
	ids := make([]string, 0, len(c.removed))
	for id := range c.removed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := c.removed[id]
		d = append(d, digestEntry{ID: id, Gen: r.gen, MaxVersion: r.version})
	}
	return d
}

// outliveRemoved raises this node's generation above a remembered life of
// its own in the digest of a full state.
func (c *Core) outliveRemoved(d []digestEntry) {
	for _, e := range d {
		if e.ID == c.id {
			c.outlive(e.Gen)
		}
	}
}
