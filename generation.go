package scuttlebutt

import "math"

// A node's generation defaults to its start time by its clock. Restarted
// after its clock was set back, a node would have a lower generation than
// its previous life, which peers still hold (dead, or alive until they
// notice): they would ignore it as old until they removed the old life.
// Instead, a node that hears of its own ID with a higher generation than
// its own, in a join's full state, a delta or a digest, takes the next
// generation above it. Its peers then replace the old life's state with
// the new one's at once, as for any restart.

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
