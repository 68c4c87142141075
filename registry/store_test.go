package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawPutter stores body under key (agents/x.json, servers/N.json) of a
// registry as it is, as no node would write it.
type rawPutter func(t *testing.T, key, body string)

// store is a way to open an empty registry under test.
type store struct {
	name string
	// openAt opens it on the store's clock clk: what it stamps entries
	// with and its time now (nil: its own, the host's).
	openAt func(t *testing.T, clk *storeClock) (Registry, rawPutter)
}

// open opens the store on its own clock.
func (s store) open(t *testing.T) (Registry, rawPutter) { return s.openAt(t, nil) }

// stores are the writable stores, each on a real backend: a directory, and
// an S3 API server.
func stores() []store {
	return []store{
		{"file", func(t *testing.T, clk *storeClock) (Registry, rawPutter) {
			dir := t.TempDir()
			f := NewFile(dir)
			if clk != nil {
				f.clock = clk.Now
			}
			return f, func(t *testing.T, key, body string) {
				path := filepath.Join(dir, key)
				if slot, ok := strings.CutPrefix(key, ServersDir); ok {
					path = filepath.Join(dir, ServersDir, strings.TrimSuffix(slot, ".json"), versionName(1))
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"s3", func(t *testing.T, clk *storeClock) (Registry, rawPutter) {
			f := startFakeS3At(t, clk, "bucket")
			return f.open(t, "bucket", "cluster/one"), func(t *testing.T, key, body string) {
				f.rawPut(t, "bucket", "cluster/one/"+key, body)
			}
		}},
	}
}

func TestStoreHeartbeats(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			r, _ := st.open(t)
			if es, err := r.List(ctx); err != nil || len(es) != 0 {
				t.Fatalf("empty registry: %v, %v", es, err)
			}
			odd := "z b/с:1" // a slash, a space and Cyrillic: escaped in names
			for _, e := range []Entry{
				{ID: "node-c", Addr: "10.0.0.3:8119", Role: RoleAgent, Time: t0},
				{ID: odd, Addr: "[fe80::1]:8119", Time: t0.Add(time.Second)},
				{ID: "node-a", Addr: "10.0.0.1:8119", Role: RoleServer, Bootstrap: true, Time: t0},
				{ID: ".dot", Addr: "10.0.0.4:8119", Time: t0},
			} {
				if err := r.Put(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			// Rewriting replaces.
			if err := r.Put(ctx, Entry{ID: "node-c", Addr: "10.0.0.33:8119", Role: RoleAgent, Time: t0.Add(time.Minute)}); err != nil {
				t.Fatal(err)
			}
			es, err := r.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []Entry{
				{ID: ".dot", Addr: "10.0.0.4:8119", Time: t0, Slot: -1, Key: "agents/%2Edot.json"},
				{ID: "node-a", Addr: "10.0.0.1:8119", Role: RoleServer, Bootstrap: true, Time: t0, Slot: -1, Key: "agents/node-a.json"},
				{ID: "node-c", Addr: "10.0.0.33:8119", Role: RoleAgent, Time: t0.Add(time.Minute), Slot: -1, Key: "agents/node-c.json"},
				{ID: odd, Addr: "[fe80::1]:8119", Time: t0.Add(time.Second), Slot: -1, Key: "agents/z%20b%2F%D1%81:1.json"},
			}
			if len(es) != len(want) {
				t.Fatalf("List: %+v, want %+v", es, want)
			}
			for i := range want {
				if !es[i].Time.Equal(want[i].Time) {
					t.Errorf("entry %d time %v, want %v", i, es[i].Time, want[i].Time)
				}
				if !es[i].Aged || es[i].Age < 0 || es[i].Age > time.Minute {
					t.Errorf("entry %d: age %v (aged %v), want the store's age of a fresh entry", i, es[i].Age, es[i].Aged)
				}
				es[i].Time, es[i].Age, es[i].Aged = want[i].Time, 0, false
				if es[i] != want[i] {
					t.Errorf("entry %d: %+v, want %+v", i, es[i], want[i])
				}
			}
			if err := r.Delete(ctx, Entry{ID: odd}); err != nil {
				t.Fatal(err)
			}
			if err := r.Delete(ctx, Entry{ID: "never-there"}); err != nil {
				t.Fatalf("deleting an absent heartbeat: %v", err)
			}
			if es, _ := r.List(ctx); len(es) != 3 {
				t.Fatalf("after Delete: %+v", es)
			}
			// What no node would write is refused, with the reason.
			for _, e := range []Entry{
				{Addr: "10.0.0.1:8119", Time: t0},
				{ID: "x", Addr: "10.0.0.1", Time: t0},
				{ID: "x", Addr: "10.0.0.1:8119"},
				{ID: "x", Addr: "10.0.0.1:8119", Time: t0, Role: "king"},
				{ID: strings.Repeat("x", 65), Addr: "10.0.0.1:8119", Time: t0},
			} {
				if err := r.Put(ctx, e); err == nil {
					t.Errorf("Put(%+v) succeeded", e)
				}
			}
		})
	}
}

func TestStoreClaims(t *testing.T) {
	ctx := context.Background()
	const expiry = 10 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			// Each node's clock agrees with the store's here: the store's
			// clock is set to the time of each claim.
			clk := newStoreClock(t0)
			r, _ := st.openAt(t, clk)
			claim := func(slot int, e Entry) error { clk.set(e.Time); return r.Claim(ctx, slot, e, expiry) }
			a, b := entryAt("a", t0), entryAt("b", t0.Add(time.Second))
			a.Role, b.Role = RoleServer, RoleServer
			if err := claim(0, a); err != nil {
				t.Fatalf("claiming a free slot: %v", err)
			}
			if err := claim(0, b); !errors.Is(err, ErrTaken) {
				t.Fatalf("claiming a live slot of another: %v, want ErrTaken", err)
			}
			a.Time = t0.Add(5 * time.Second)
			if err := claim(0, a); err != nil {
				t.Fatalf("renewing: %v", err)
			}
			// b comes back when a's renewal is older than expiry: takeover.
			b.Time = a.Time.Add(expiry - time.Millisecond)
			if err := claim(0, b); !errors.Is(err, ErrTaken) {
				t.Fatalf("claiming just before expiry: %v, want ErrTaken", err)
			}
			b.Time = a.Time.Add(expiry)
			if err := claim(0, b); err != nil {
				t.Fatalf("taking over an expired slot: %v", err)
			}
			// a wakes up: its renewal fails, and so does its release.
			a.Time = b.Time.Add(time.Second)
			if err := claim(0, a); !errors.Is(err, ErrTaken) {
				t.Fatalf("renewing a lost slot: %v, want ErrTaken", err)
			}
			if err := r.Release(ctx, 0, a); !errors.Is(err, ErrTaken) {
				t.Fatalf("releasing a lost slot: %v, want ErrTaken", err)
			}
			es, err := r.List(ctx)
			if err != nil || len(es) != 1 || es[0].ID != "b" || es[0].Slot != 0 || es[0].Key != "servers/0.json" && st.name == "s3" {
				t.Fatalf("List: %+v, %v", es, err)
			}
			// b releases: a can claim at once, without waiting for expiry.
			if err := r.Release(ctx, 0, b); err != nil {
				t.Fatal(err)
			}
			if es, _ := r.List(ctx); len(es) != 1 || !es[0].Released || es[0].Live(b.Time, expiry) {
				t.Fatalf("a released slot: %+v", es)
			}
			if err := r.Release(ctx, 0, b); err != nil {
				t.Fatalf("releasing twice: %v", err)
			}
			if err := claim(0, a); err != nil {
				t.Fatalf("claiming a released slot: %v", err)
			}
			if err := r.Release(ctx, 5, a); err != nil {
				t.Fatalf("releasing a slot never claimed: %v", err)
			}
			if err := claim(-1, a); err == nil {
				t.Fatal("claimed slot -1")
			}
		})
	}
}

// TestStoreBadEntries: entries that do not parse are skipped with an error
// that names them; a slot that does not parse is free.
func TestStoreBadEntries(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now()
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			r, rawPut := st.open(t)
			if err := r.Put(ctx, entryAt("good", t0)); err != nil {
				t.Fatal(err)
			}
			rawPut(t, "agents/garbage.json", "{not json")
			rawPut(t, "agents/noaddr.json", `{"id":"noaddr","time":"2026-01-01T00:00:00Z"}`)
			rawPut(t, "agents/big.json", `{"id":"big","addr":"1.2.3.4:5","time":"2026-01-01T00:00:00Z","x":"`+strings.Repeat("x", MaxEntrySize)+`"}`)
			rawPut(t, "servers/1.json", "not a claim")
			es, err := r.List(ctx)
			if len(es) != 1 || es[0].ID != "good" {
				t.Errorf("List kept %+v, want only the good entry", es)
			}
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("List error %v, want one wrapping ErrBadEntry", err)
			}
			for _, want := range []string{"agents/garbage.json", "agents/noaddr.json", "no", "agents/big.json", "servers/1", "does not parse"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not name %q:\n%v", want, err)
				}
			}
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Errorf("%v is not an *EntryError", err)
			}
			if err := r.Claim(ctx, 1, entryAt("c", t0), time.Minute); err != nil {
				t.Fatalf("claiming a slot that does not parse: %v", err)
			}
			if es, _ := r.List(ctx); len(es) != 2 || es[0].ID != "c" || es[0].Slot != 1 {
				t.Fatalf("after the claim: %+v", es)
			}
		})
	}
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	const expiry = 10 * time.Second
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			clk := newStoreClock(now) // set to the time of each write, then now
			r, _ := st.openAt(t, clk)
			for _, e := range []Entry{entryAt("live", now.Add(-expiry+time.Second)), entryAt("dead", now.Add(-expiry)), entryAt("older", now.Add(-time.Hour))} {
				clk.set(e.Time)
				if err := r.Put(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			clk.set(now.Add(-time.Hour))
			if err := r.Claim(ctx, 0, entryAt("dead", now.Add(-time.Hour)), expiry); err != nil {
				t.Fatal(err)
			}
			clk.set(now)
			es, _ := r.List(ctx)
			n, err := Purge(ctx, r, es, now, expiry)
			if err != nil || n != 2 {
				t.Fatalf("Purge: %d, %v; want 2", n, err)
			}
			es, _ = r.List(ctx)
			if len(es) != 2 || !es[0].IsSlot() || es[1].ID != "live" {
				t.Fatalf("after Purge: %+v; want the slot (taken over, not purged) and the live heartbeat", es)
			}
			if got := JoinAddrs(es, "nobody", now, expiry); len(got) != 1 || got[0] != es[1].Addr {
				t.Fatalf("JoinAddrs: %v", got)
			}
		})
	}
}

func TestJoinAddrsOrder(t *testing.T) {
	now := time.Now()
	es := []Entry{
		{ID: "s0", Addr: "10.0.0.1:1", Time: now, Slot: 0},
		{ID: "s1", Addr: "10.0.0.2:1", Time: now.Add(-time.Hour), Slot: 1},
		{ID: "s2", Addr: "10.0.0.3:1", Time: now, Slot: 2},
		{ID: "a", Addr: "10.0.0.4:1", Time: now, Slot: -1},
		{ID: "me", Addr: "10.0.0.5:1", Time: now, Slot: -1},
		{ID: "s0", Addr: "10.0.0.1:1", Time: now, Slot: -1},
		{ID: "r", Addr: "10.0.0.6:1", Time: now, Slot: -1, Released: true},
	}
	got := strings.Join(JoinAddrs(es, "me", now, time.Minute), ",")
	if want := "10.0.0.1:1,10.0.0.3:1,10.0.0.4:1"; got != want {
		t.Fatalf("JoinAddrs = %s, want %s", got, want)
	}
	if s := Servers(es, "s2", now, time.Minute); len(s) != 1 || s[0].ID != "s0" {
		t.Fatalf("Servers = %+v", s)
	}
}

func TestFileMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not-mounted")
	r, err := Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Put(context.Background(), entryAt("a", time.Now()))
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("Put into a missing directory: %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("the registry's directory was created")
	}
	if _, err := r.List(context.Background()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("List of a missing directory: %v", err)
	}
	if err := r.Claim(context.Background(), 0, entryAt("a", time.Now()), time.Minute); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Claim in a missing directory: %v", err)
	}
}

// TestFileVersionsPruned: a slot's directory keeps at most a couple of
// versions however often it is renewed.
func TestFileVersionsPruned(t *testing.T) {
	r := NewFile(t.TempDir())
	t0 := time.Now()
	for i := range 20 {
		if err := r.Claim(context.Background(), 0, entryAt("a", t0.Add(time.Duration(i)*time.Second)), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := versions(r.slotDir(0))
	if err != nil || len(vs) != 1 || vs[0] != 20 {
		t.Fatalf("versions left: %v, %v; want [20]", vs, err)
	}
	left, _ := filepath.Glob(filepath.Join(r.slotDir(0), ".tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
