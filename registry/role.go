package registry

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Decision is a node's role, as Choose gave it.
type Decision struct {
	Role      string  // RoleServer or RoleAgent
	Bootstrap bool    // a server that found no other live server: it bootstraps the cluster
	Slot      int     // the server slot held, or -1 for an agent
	Servers   []Entry // the live servers other than this node when the choice was made, by slot
}

// Choose gives node self (its ID and address; self.Time is now) a role
// in a cluster that wants servers servers, with the seed's algorithm made
// race-free by exclusive claims:
//
//   - it reads the slots, then tries to Claim slots 0 to servers-1 in
//     turn (its own live slot first, after a restart), skipping those a
//     live node holds;
//   - holding a slot, it is a server; it bootstraps if the slot is 0 and
//     no other slot was live when it read them;
//   - holding none (there are enough servers), it is an agent.
//
// Claims are exclusive, so at most servers nodes are servers at a time, and
// only slot 0's holder can bootstrap, so at most one node bootstraps. When
// many nodes choose at once on a fresh registry, each claim of slot 0 but
// one fails because another holds it, so exactly one bootstraps. A server
// keeps its slot by claiming it again (a renewal) every expiry/2; a slot
// whose holder stopped renewing is taken over after expiry.
//
// Errors of the store are returned as they are (the caller retries);
// entries that do not parse are ignored (a slot that does not parse is
// free).
func Choose(ctx context.Context, r Registry, self Entry, servers int, expiry time.Duration) (Decision, error) {
	if servers <= 0 {
		return Decision{}, fmt.Errorf("registry: %d servers wanted: want 1 or more", servers)
	}
	entries, err := r.List(ctx)
	if err != nil && !errors.Is(err, ErrBadEntry) {
		return Decision{}, err
	}
	now := self.Time
	live := map[int]Entry{}
	own := -1
	for _, e := range entries {
		if e.IsSlot() && e.Live(now, expiry) {
			live[e.Slot] = e
			if e.ID == self.ID && e.Slot < servers && own < 0 {
				own = e.Slot
			}
		}
	}
	order := make([]int, 0, servers)
	if own >= 0 {
		order = append(order, own)
	}
	for i := range servers {
		if i != own {
			order = append(order, i)
		}
	}
	raced := false // a claim lost to another node: the snapshot is stale
	for _, slot := range order {
		if cur, ok := live[slot]; ok && cur.ID != self.ID {
			continue
		}
		others := 0
		var list []Entry
		for _, e := range entries {
			if e.IsSlot() && e.Slot != slot && e.ID != self.ID && e.Live(now, expiry) {
				others++
				list = append(list, e)
			}
		}
		claim := self
		claim.Role = RoleServer
		claim.Bootstrap = slot == 0 && others == 0
		err := r.Claim(ctx, slot, claim, expiry)
		if errors.Is(err, ErrTaken) {
			raced = true
			continue
		}
		if err != nil {
			return Decision{}, err
		}
		return Decision{Role: RoleServer, Bootstrap: claim.Bootstrap, Slot: slot, Servers: list}, nil
	}
	if raced {
		if es, err := r.List(ctx); err == nil || errors.Is(err, ErrBadEntry) {
			entries = es
		}
	}
	return Decision{Role: RoleAgent, Slot: -1, Servers: Servers(entries, self.ID, now, expiry)}, nil
}

// Renew claims slot again for the server of d: it must be called every
// expiry/2 or the slot may be taken over. ErrTaken means the slot was lost
// (the server was silent for longer than expiry and another node took it).
func Renew(ctx context.Context, r Registry, self Entry, d Decision, expiry time.Duration) error {
	if d.Role != RoleServer {
		return nil
	}
	self.Role = RoleServer
	self.Bootstrap = d.Bootstrap
	return r.Claim(ctx, d.Slot, self, expiry)
}
