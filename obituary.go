package scuttlebutt

// Obituaries. A node removes a dead node RemoveAfter after its death and
// remembers the removal for removalMemory times that, refusing the removed
// life's state meanwhile. A peer that lagged behind (it was stopped, or
// cut off, while the node died) may still hold the node alive, and with a
// single monitor per node no one may watch it there: its monitor in that
// peer's view has removed it. So a node that finds a removed life in a
// peer's digest answers with an obituary, a delta with no entries and the
// dead mark on the version removed: the peer holds the node dead from
// then on (unless it holds a later version, a life that is really back),
// and removes it in turn before the others forget the removal.

// obituaries returns the deltas that tell a peer of the lives in its
// digest that this node removed, within budget bytes, and the bytes used.
func (c *Core) obituaries(digest []digestEntry, budget int) ([]nodeDelta, int) {
	var out []nodeDelta
	used := 0
	for _, e := range digest {
		r, ok := c.removed[e.ID]
		if !ok || e.Gen != r.gen || e.MaxVersion > r.version || r.version == 0 {
			continue
		}
		d := nodeDelta{ID: e.ID, Gen: r.gen, FromVersion: r.version, MaxVersion: r.version, Dead: r.version}
		if used+d.size() > budget {
			break
		}
		out = append(out, d)
		used += d.size()
	}
	return out, used
}
