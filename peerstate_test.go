package scuttlebutt

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A peerState under random writes agrees with a plain map, and keeps its
// version index and counts.
func TestPeerStateModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	p := newPeerState("n", 1)
	model := map[string]string{} // live user keys
	deleted := map[string]bool{}
	var version uint64
	for i := range 3000 {
		version += 1 + uint64(rng.IntN(3)) // receivers may see gaps in versions of overwritten keys
		key := fmt.Sprintf("k%d", rng.IntN(40))
		if rng.IntN(20) == 0 {
			key = keyAddr
		}
		del := rng.IntN(4) == 0
		value := fmt.Sprint(i)
		p.put(&entry{key: key, value: value, version: version, deleted: del}, t0)
		switch {
		case key == keyAddr && !del && p.addr != value:
			t.Fatalf("addr = %q after setting %q", p.addr, value)
		case del:
			delete(model, key)
			deleted[key] = true
		case key != keyAddr:
			model[key] = value
			delete(deleted, key)
		default:
			delete(deleted, key)
		}
		checkInvariants(t, p)
		if p.maxVersion != version {
			t.Fatalf("maxVersion %d after version %d", p.maxVersion, version)
		}
		if d := cmp.Diff(model, p.userState()); d != "" {
			t.Fatalf("step %d (-model +state):\n%s", i, d)
		}
		if p.tombstones != len(deleted) {
			t.Fatalf("%d tombstones, the model has %d", p.tombstones, len(deleted))
		}
		from := uint64(rng.IntN(int(version) + 1))
		after := p.after(from)
		for j, e := range after {
			if e.version <= from || j > 0 && after[j-1].version >= e.version {
				t.Fatalf("after(%d) holds version %d at %d", from, e.version, j)
			}
		}
		if n := len(p.byVersion) - len(after); n > 0 && p.byVersion[n-1].version > from {
			t.Fatalf("after(%d) misses version %d", from, p.byVersion[n-1].version)
		}
	}
	if _, ok := p.get(ReservedPrefix + "nothing"); ok {
		t.Fatal("get of a missing key")
	}
}

func TestPeerStateLeftKey(t *testing.T) {
	p := newPeerState("n", 1)
	p.put(&entry{key: keyLeft, value: "1", version: 1}, t0)
	if !p.left {
		t.Fatal("not left after keyLeft")
	}
	p.put(&entry{key: keyLeft, version: 2, deleted: true}, t0)
	if p.left {
		t.Fatal("still left after keyLeft was deleted")
	}
	if len(p.userState()) != 0 || p.live != 0 {
		t.Fatalf("reserved keys counted as user keys: %v, live %d", p.userState(), p.live)
	}
}

func TestPeerStateCollect(t *testing.T) {
	const ttl = time.Minute
	p := newPeerState("n", 1)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	p.put(&entry{key: "live", value: "x", version: 1}, at(0))
	p.put(&entry{key: "old", value: "x", version: 2}, at(0))
	p.put(&entry{key: "old", version: 3, deleted: true}, at(0))    // deleted at 0 s
	p.put(&entry{key: "young", version: 4, deleted: true}, at(30)) // deleted at 30 s
	p.put(&entry{key: "later", value: "x", version: 5}, at(30))

	p.collect(at(59), ttl)
	if p.tombstones != 2 || p.lastGC != 0 {
		t.Fatalf("collected before the TTL: %d tombstones, lastGC %d", p.tombstones, p.lastGC)
	}
	p.collect(at(60), ttl)
	if _, ok := p.keys["old"]; ok || p.tombstones != 1 || p.lastGC != 3 {
		t.Fatalf("at the TTL: keys %v, %d tombstones, lastGC %d", slices.Collect(maps.Keys(p.keys)), p.tombstones, p.lastGC)
	}
	checkInvariants(t, p)
	p.collect(at(90), ttl)
	if p.tombstones != 0 || p.lastGC != 4 || p.maxVersion != 5 {
		t.Fatalf("all collected: %d tombstones, lastGC %d, maxVersion %d", p.tombstones, p.lastGC, p.maxVersion)
	}
	checkInvariants(t, p)
	if d := cmp.Diff(map[string]string{"live": "x", "later": "x"}, p.userState()); d != "" {
		t.Fatalf("live keys (-want +got):\n%s", d)
	}
	// A new write after collection is indexed as usual.
	p.put(&entry{key: "old", value: "back", version: 6}, at(90))
	checkInvariants(t, p)
}

func TestPeerStateReset(t *testing.T) {
	p := newPeerState("n", 1)
	p.put(&entry{key: keyAddr, value: "a", version: 1}, t0)
	p.put(&entry{key: keyLeft, value: "1", version: 2}, t0)
	p.put(&entry{key: "k", version: 3, deleted: true}, t0)
	p.lastGC = 1
	p.reset(7)
	if p.gen != 7 || p.maxVersion != 0 || p.lastGC != 0 || len(p.keys) != 0 || len(p.byVersion) != 0 ||
		p.tombstones != 0 || p.live != 0 || p.addr != "" || p.left {
		t.Fatalf("after reset: %+v", p)
	}
}
