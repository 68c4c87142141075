package docker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/scuttlebutt-go/scuttlebutt"
)

// These tests run two real scuttlebutt nodes on 127.0.0.1, gossiping every
// 100 ms: the adapter publishes through node 1 and the queries run on node 2.

// changes is a StateSubscriber (and DeleteSubscriber) that wakes waiters at
// every change of another node's keys: waits without a polling delay.
type changes struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced at every change
}

func newChanges() *changes { return &changes{ch: make(chan struct{})} }

func (c *changes) NotifyUpdate(string, string, string) { c.changed() }
func (c *changes) NotifyDelete(string, string)         { c.changed() }

func (c *changes) changed() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

// await waits until cond holds, checking it at every change.
func (c *changes) await(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ch := c.ch
		c.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return cond()
		}
	}
}

// newNode starts a node on 127.0.0.1 in a cluster of this test run only,
// closed at the end of the test.
func newNode(t testing.TB, id string, sub scuttlebutt.StateSubscriber) *scuttlebutt.Node {
	t.Helper()
	cfg := scuttlebutt.DefaultLocalConfig()
	cfg.ID = id
	cfg.BindAddr = "127.0.0.1:0"
	cfg.GossipInterval = 100 * time.Millisecond
	cfg.ClusterID = "docker-test-" + runID
	cfg.StateSubscriber = sub
	n, err := scuttlebutt.Create(cfg)
	if err != nil {
		t.Fatalf("creating node %s: %v", id, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// nodePair starts two nodes that know each other as alive. sub, if not nil,
// is node 2's StateSubscriber.
func nodePair(t testing.TB, sub scuttlebutt.StateSubscriber) (n1, n2 *scuttlebutt.Node) {
	t.Helper()
	n1 = newNode(t, "host-1", nil)
	n2 = newNode(t, "host-2", sub)
	if err := n2.Seed([]string{n1.Addr()}); err != nil {
		t.Fatalf("seeding: %v", err)
	}
	alive := func(n *scuttlebutt.Node, id string) bool {
		info, ok := n.NodeInfo(id)
		return ok && info.Status == scuttlebutt.StatusAlive
	}
	eventually(t, 10*time.Second, "the two nodes alive to each other", func() bool {
		return alive(n1, n2.ID()) && alive(n2, n1.ID())
	})
	return n1, n2
}

// containersOf returns the container IDs of instances, in order.
func containersOf(list []Instance) []string {
	out := make([]string, len(list))
	for i, in := range list {
		out[i] = in.Container
	}
	return out
}

func TestSecondNodeSeesServices(t *testing.T) {
	cli := engine(t)
	n1, n2 := nodePair(t, nil)
	run := runAdapter(t, n1, cli, testOptions(t))

	labels := map[string]string{"scuttlebutt.service": "gossip-web", "scuttlebutt.tags": "blue"}
	ids := startContainers(t, spec{publish: true, labels: labels}, spec{publish: true, labels: labels})
	a, b := ids[0], ids[1]
	query := func(onlyHealthy bool) []Instance { return Instances(n2, "gossip-web", onlyHealthy) }

	eventually(t, 20*time.Second, "both instances healthy on node 2", func() bool {
		return len(query(true)) == 2
	})
	for _, in := range query(false) {
		id := a
		if in.Container != shortID(a) {
			id = b
		}
		if in.Node != n1.ID() || in.NodeAddr != n1.Addr() || in.Host != "127.0.0.1" || in.Port != hostPort(t, id) ||
			in.Private != 8080 || in.Proto != "tcp" || len(in.Tags) != 1 || in.Tags[0] != "blue" {
			t.Errorf("instance seen on node 2: %+v", in)
		}
	}

	// b turns unhealthy: listed after a, and left out of the healthy ones
	post(t, b, "/sick")
	eventually(t, 20*time.Second, "b unhealthy on node 2", func() bool {
		all, healthy := query(false), query(true)
		return len(all) == 2 && all[0].Container == shortID(a) && all[1].Health == HealthUnhealthy &&
			len(healthy) == 1 && healthy[0].Container == shortID(a)
	})

	// a stopped: withdrawn on node 2 (healthy: it answers, and so exits at
	// once on SIGTERM)
	if _, err := cli.ContainerStop(context.Background(), a, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a withdrawn on node 2", func() bool {
		all := query(false)
		return len(all) == 1 && all[0].Container == shortID(b)
	})

	// a clean stop of the adapter withdraws the rest, through tombstones
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	eventually(t, 20*time.Second, "every instance withdrawn on node 2", func() bool {
		state, _ := n2.State(n1.ID())
		for k := range state {
			if _, ok := keyContainer(k); ok {
				return false
			}
		}
		return len(Services(n2)) == 0
	})
}

// TestCrashedNodeServicesVanish: a node that stops without a word (Close, no
// Leave, adapter still running) cannot withdraw its records; node 2 still
// holds them, but its queries leave them out once its failure detector
// declares the node dead.
func TestCrashedNodeServicesVanish(t *testing.T) {
	cli := engine(t)
	n1, n2 := nodePair(t, nil)
	runAdapter(t, n1, cli, testOptions(t))

	id := startContainer(t, spec{publish: true, labels: map[string]string{"scuttlebutt.service": "gossip-crash"}})
	eventually(t, 20*time.Second, "instance on node 2", func() bool {
		list := Instances(n2, "gossip-crash", false)
		return len(list) == 1 && list[0].Container == shortID(id)
	})

	n1.Close() // crash
	eventually(t, 20*time.Second, "node 1 declared dead by node 2", func() bool {
		info, ok := n2.NodeInfo(n1.ID())
		return ok && info.Status == scuttlebutt.StatusDead
	})
	state, _ := n2.State(n1.ID())
	if _, ok := state[serviceKey("gossip-crash", id, 8080, "tcp")]; !ok {
		t.Fatalf("node 2 no longer holds the dead node's record (keys %v): the test shows nothing", state)
	}
	if list := Instances(n2, "gossip-crash", false); len(list) != 0 {
		t.Errorf("instances of a dead node listed: %v", containersOf(list))
	}
	if svcs := Services(n2); len(svcs) != 0 {
		t.Errorf("services of a dead node listed: %v", svcs)
	}
}

// TestLeftNodeServicesVanish: a node that leaves while its adapter still
// runs has its records left out of queries as soon as it is marked left.
func TestLeftNodeServicesVanish(t *testing.T) {
	cli := engine(t)
	n1, n2 := nodePair(t, nil)
	runAdapter(t, n1, cli, testOptions(t))

	startContainer(t, spec{publish: true, labels: map[string]string{"scuttlebutt.service": "gossip-leave"}})
	eventually(t, 20*time.Second, "instance on node 2", func() bool {
		return len(Instances(n2, "gossip-leave", false)) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n1.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	eventually(t, 20*time.Second, "node 1 marked left on node 2", func() bool {
		info, ok := n2.NodeInfo(n1.ID())
		return ok && info.Status == scuttlebutt.StatusLeft
	})
	if list := Instances(n2, "gossip-leave", false); len(list) != 0 {
		t.Errorf("instances of a node that left listed: %v", containersOf(list))
	}
}
