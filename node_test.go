package scuttlebutt_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/internal/memnet"
)

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is a subscriber that records what it is told.
type recorder struct {
	mu     sync.Mutex
	log    []string
	onJoin func(id string)
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}
func (r *recorder) NotifyJoin(id string) {
	r.add("join " + id)
	if r.onJoin != nil {
		r.onJoin(id)
	}
}
func (r *recorder) NotifyLeave(id string)        { r.add("leave " + id) }
func (r *recorder) NotifyUpdate(id, k, v string) { r.add("update " + id + " " + k + "=" + v) }
func (r *recorder) NotifyDelete(id, k string)    { r.add("delete " + id + " " + k) }
func (r *recorder) NotifyStatus(id string, from, to scuttlebutt.Status) {
	r.add(fmt.Sprintf("status %s %v->%v", id, from, to))
}
func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.log, s)
}
func (r *recorder) matching(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.log {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func memNode(t *testing.T, net *memnet.Network, id string, tune func(*scuttlebutt.Config)) *scuttlebutt.Node {
	t.Helper()
	cfg := scuttlebutt.DefaultLocalConfig()
	cfg.ID = id
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.Transport = net.Listen()
	if tune != nil {
		tune(cfg)
	}
	n, err := scuttlebutt.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestNodesShareState(t *testing.T) {
	net := memnet.New()
	rec := &recorder{}
	a := memNode(t, net, "a", func(c *scuttlebutt.Config) {
		c.NodeSubscriber, c.StateSubscriber = rec, rec
	})
	b := memNode(t, net, "b", func(c *scuttlebutt.Config) {
		c.InitialState = map[string]string{"rpcAddr": "10.0.0.2:5112"}
	})
	c := memNode(t, net, "c", nil)
	if err := b.Seed([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := c.Seed([]string{a.Addr(), b.Addr()}); err != nil {
		t.Fatal(err)
	}
	// The initial state came with the join, before any round.
	if v, ok := a.Lookup("b", "rpcAddr"); !ok || v != "10.0.0.2:5112" {
		t.Fatalf("a.Lookup(b, rpcAddr) = %q, %v right after b joined", v, ok)
	}
	for i := range 5 {
		if err := c.UpdateLocal("k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "a to hold c's k", func() bool {
		v, _ := a.Lookup("c", "k")
		return v == "4"
	})
	if err := c.DeleteLocal("k"); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateLocal("k2", "v"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a and b to hold c's state", func() bool {
		sa, _ := a.State("c")
		sb, _ := b.State("c")
		return len(sa) == 1 && sa["k2"] == "v" && len(sb) == 1 && sb["k2"] == "v"
	})
	waitFor(t, 5*time.Second, "a's subscriber to hear of c's delete", func() bool {
		return rec.has("delete c k") && rec.has("update c k2=v")
	})
	// c's updates arrive in version order, whatever was skipped.
	got := rec.matching("update c k=")
	want := slices.Clone(got)
	slices.SortFunc(want, strings.Compare)
	if !slices.Equal(got, want) || len(got) == 0 {
		t.Fatalf("updates of c out of order: %q", got)
	}
	if !rec.has("join b") || !rec.has("join c") {
		t.Fatalf("joins not reported: %q", rec.matching("join"))
	}
	nodes := a.Nodes()
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
		if n.Status != scuttlebutt.StatusAlive {
			t.Errorf("%s is %v", n.ID, n.Status)
		}
	}
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Fatalf("a.Nodes() = %q", ids)
	}
	if info, ok := a.NodeInfo("a"); !ok || !info.Local || info.Addr != a.Addr() {
		t.Fatalf("a.NodeInfo(a) = %+v, %v", info, ok)
	}
}

// A callback may call the node: callbacks never run under the node's lock.
func TestCallbackMayCallNode(t *testing.T) {
	net := memnet.New()
	var a *scuttlebutt.Node
	rec := &recorder{}
	done := make(chan string, 1)
	rec.onJoin = func(id string) {
		_ = a.UpdateLocal("saw", id)
		v, _ := a.Lookup(id, "hello")
		done <- v
	}
	a = memNode(t, net, "a", func(c *scuttlebutt.Config) { c.NodeSubscriber = rec })
	b := memNode(t, net, "b", func(c *scuttlebutt.Config) { c.InitialState = map[string]string{"hello": "world"} })
	if err := b.Seed([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-done:
		if v != "world" {
			t.Fatalf("Lookup from the callback = %q", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyJoin never ran")
	}
	waitFor(t, 5*time.Second, "b to see a's key set from the callback", func() bool {
		v, _ := b.Lookup("a", "saw")
		return v == "b"
	})
}

func TestLeaveIsSeenAsLeft(t *testing.T) {
	net := memnet.New()
	rec := &recorder{}
	a := memNode(t, net, "a", func(c *scuttlebutt.Config) { c.NodeSubscriber = rec })
	b := memNode(t, net, "b", nil)
	if err := b.Seed([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b alive at a", func() bool {
		i, ok := a.NodeInfo("b")
		return ok && i.Status == scuttlebutt.StatusAlive
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	// Leave returned once a held the news: a says left, not dead.
	if i, _ := a.NodeInfo("b"); i.Status != scuttlebutt.StatusLeft {
		t.Fatalf("b is %v at a after Leave returned", i.Status)
	}
	waitFor(t, 5*time.Second, "NotifyLeave(b)", func() bool { return rec.has("leave b") })
	if err := b.UpdateLocal("k", "v"); !errors.Is(err, scuttlebutt.ErrClosed) {
		t.Fatalf("UpdateLocal after Leave = %v, want ErrClosed", err)
	}
}

func TestLeaveAloneReturnsAtOnce(t *testing.T) {
	a := memNode(t, memnet.New(), "a", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a Leave that waited would fail with ctx's error
	if err := a.Leave(ctx); err != nil {
		t.Fatalf("Leave on a cluster of one: %v", err)
	}
}

func TestSeedErrors(t *testing.T) {
	net := memnet.New()
	a := memNode(t, net, "a", nil)
	if err := a.Seed(nil); !errors.Is(err, scuttlebutt.ErrNoSeeds) {
		t.Errorf("Seed(nil) = %v", err)
	}
	if err := a.Seed([]string{"no-port"}); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Errorf("Seed(no-port) = %v", err)
	}
	if err := a.Seed([]string{a.Addr()}); err != nil {
		t.Errorf("Seed(own address) = %v: a first node may join itself", err)
	}
	if err := a.Seed([]string{"mem:999"}); err == nil || !strings.Contains(err.Error(), "mem:999") {
		t.Errorf("Seed(unreachable) = %v, want an error naming it", err)
	}
}

// A seed that is down when Seed is called is retried until it answers.
func TestSeedRetriedUntilItAnswers(t *testing.T) {
	net := memnet.New()
	a := memNode(t, net, "a", func(c *scuttlebutt.Config) { c.SeedRetry = 10 * time.Millisecond })
	b := memNode(t, net, "b", nil)
	net.Partition([]string{a.Addr()}, []string{b.Addr()})
	if err := a.Seed([]string{b.Addr()}); err == nil {
		t.Fatal("Seed through a partition succeeded")
	}
	net.Heal()
	waitFor(t, 5*time.Second, "a to join b after the seed came back", func() bool {
		i, ok := b.NodeInfo("a")
		return ok && i.Status == scuttlebutt.StatusAlive
	})
}

func TestNodeRefusesBadKeysAndConfig(t *testing.T) {
	a := memNode(t, memnet.New(), "a", nil)
	var se *scuttlebutt.SizeError
	if err := a.UpdateLocal(strings.Repeat("k", scuttlebutt.MaxKeySize+1), "v"); !errors.As(err, &se) || se.What != "key" {
		t.Errorf("long key: %v", err)
	}
	if err := a.UpdateLocal("k", strings.Repeat("v", scuttlebutt.MaxValueSize(1400)+1)); !errors.As(err, &se) || se.What != "value" {
		t.Errorf("long value: %v", err)
	}
	if err := a.UpdateLocal(":addr", "x"); !errors.Is(err, scuttlebutt.ErrReservedKey) {
		t.Errorf("reserved key: %v", err)
	}
	if err := a.UpdateLocal("", "x"); !errors.Is(err, scuttlebutt.ErrEmptyKey) {
		t.Errorf("empty key: %v", err)
	}
	if s, _ := a.State("a"); len(s) != 0 {
		t.Errorf("refused writes left state %v", s)
	}
	_, err := scuttlebutt.Create(&scuttlebutt.Config{MaxPacketSize: 100, Transport: memnet.New().Listen()})
	if !errors.Is(err, scuttlebutt.ErrInvalidConfig) || !strings.Contains(err.Error(), "MaxPacketSize") {
		t.Errorf("Create with MaxPacketSize 100 = %v", err)
	}
}

func TestCreateAssignsRandomID(t *testing.T) {
	cfg := scuttlebutt.DefaultLocalConfig()
	cfg.Transport = memnet.New().Listen()
	n, err := scuttlebutt.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if len(n.ID()) != 16 {
		t.Fatalf("random ID %q", n.ID())
	}
}

// Nodes that all leave at once do not wait for acks nobody is left to give:
// each returns once it holds the others' departures, before its deadline.
func TestEveryoneLeavesAtOnce(t *testing.T) {
	net := memnet.New()
	ns := []*scuttlebutt.Node{memNode(t, net, "a", nil), memNode(t, net, "b", nil), memNode(t, net, "c", nil)}
	for _, n := range ns[1:] {
		if err := n.Seed([]string{ns[0].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "all alive", func() bool {
		for _, n := range ns {
			for _, i := range n.Nodes() {
				if i.Status != scuttlebutt.StatusAlive {
					return false
				}
			}
			if len(n.Nodes()) != 3 {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, len(ns))
	for _, n := range ns {
		go func() { errs <- n.Leave(ctx) }()
	}
	for range ns {
		if err := <-errs; err != nil {
			t.Fatalf("Leave: %v", err)
		}
	}
}

// A stream frame that declares more than a stream may carry (64 MiB) is
// refused before anything is read into memory, and counted.
func TestHugeStreamFrameCounted(t *testing.T) {
	net := memnet.New()
	a := memNode(t, net, "a", nil)
	conn, err := net.Listen().Dial(context.Background(), a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0x04, 0x00, 0x00, 0x01}); err != nil { // 64 MiB + 1
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the frame to be counted as stream_too_large", func() bool {
		return a.Stats().Dropped["stream_too_large"] == 1
	})
}
