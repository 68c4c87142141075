package simnet

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// cluster starts n nodes with the local config, each joining node 0.
func cluster(t testing.TB, net *Network, n int, tune func(*scuttlebutt.Config)) []*Node {
	t.Helper()
	var nodes []*Node
	for i := range n {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = fmt.Sprintf("node-%d", i)
		cfg.DetectorWindow = 16
		if tune != nil {
			tune(cfg)
		}
		nd, err := net.Add(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
		if i > 0 {
			net.Join(nd, nodes[0])
		}
	}
	return nodes
}

// behind returns the first up node that does not hold an up node's latest
// generation and version, or "": a cheap check of convergence for large
// clusters, confirmed by diverged.
func behind(nodes []*Node) string {
	for _, owner := range nodes {
		if !owner.Up {
			continue
		}
		id := owner.Core.ID()
		g, v, _ := owner.Core.Version(id)
		for _, nd := range nodes {
			if !nd.Up || nd == owner {
				continue
			}
			if g2, v2, _ := nd.Core.Version(id); g2 != g || v2 != v {
				return fmt.Sprintf("%s holds %s at generation %d version %d, not %d %d", nd.Core.ID(), id, g2, v2, g, v)
			}
		}
	}
	return ""
}

// spread returns the first up node that does not hold owner's latest
// generation and version, or "".
func spread(nodes []*Node, owner *Node) string {
	id := owner.Core.ID()
	g, v, _ := owner.Core.Version(id)
	for _, nd := range nodes {
		if g2, v2, _ := nd.Core.Version(id); nd.Up && (g2 != g || v2 != v) {
			return fmt.Sprintf("%s holds %s at generation %d version %d, not %d %d", nd.Core.ID(), id, g2, v2, g, v)
		}
	}
	return ""
}

// diverged returns the first difference between what the up nodes hold of
// each other and what each holds of itself, or "".
func diverged(nodes []*Node) string {
	for _, owner := range nodes {
		if !owner.Up {
			continue
		}
		id := owner.Core.ID()
		want, _ := owner.Core.State(id)
		for _, nd := range nodes {
			if !nd.Up || nd == owner {
				continue
			}
			got, ok := nd.Core.State(id)
			if !ok {
				return fmt.Sprintf("%s does not know %s", nd.Core.ID(), id)
			}
			if maps.Equal(want, got) {
				continue
			}
			if d := cmp.Diff(want, got); d != "" {
				return fmt.Sprintf("%s's view of %s (-want +got):\n%s", nd.Core.ID(), id, d)
			}
		}
	}
	return ""
}

func TestSmallClusterConverges(t *testing.T) {
	net := New(Options{Seed: 1, MaxDelay: 5 * time.Millisecond})
	nodes := cluster(t, net, 16, nil)
	for i, nd := range nodes {
		net.Do(nd, func(c *scuttlebutt.Core) {
			if err := c.Set(net.Now, "k", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		})
	}
	if !net.RunUntil(func() bool { return diverged(nodes) == "" }, 10*time.Second) {
		t.Fatal(diverged(nodes))
	}
	if net.Oversize != 0 {
		t.Fatalf("%d datagrams over MaxPacketSize", net.Oversize)
	}
}

// An encrypted cluster converges as a plaintext one does, the largest
// values included, with no datagram over MaxPacketSize once sealed.
func TestEncryptedClusterConverges(t *testing.T) {
	net := New(Options{Seed: 1, MaxDelay: 5 * time.Millisecond})
	key := []byte("0123456789abcdef")
	nodes := cluster(t, net, 64, func(c *scuttlebutt.Config) {
		kr, err := scuttlebutt.NewKeyring(key)
		if err != nil {
			t.Fatal(err)
		}
		c.Keyring = kr
	})
	big := strings.Repeat("v", scuttlebutt.MaxValueSize(1400))
	for i, nd := range nodes {
		net.Do(nd, func(c *scuttlebutt.Core) {
			value := fmt.Sprint(i)
			if i%8 == 0 {
				value = big
			}
			if err := c.Set(net.Now, "k", value); err != nil {
				t.Fatal(err)
			}
		})
	}
	if !net.RunUntil(func() bool { return diverged(nodes) == "" }, 20*time.Second) {
		t.Fatal(diverged(nodes))
	}
	if net.Oversize != 0 {
		t.Fatalf("%d datagrams over MaxPacketSize", net.Oversize)
	}
	for _, nd := range nodes {
		if d := nd.Core.Stats().Dropped; len(d) != 0 {
			t.Fatalf("%s dropped %v", nd.Core.ID(), d)
		}
	}
}

func nodeID(i int) string { return fmt.Sprintf("node-%d", i) }

// The same seed gives the same run: the same datagrams, the same events,
// in the same order, at the same virtual times.
func TestSameSeedSameRun(t *testing.T) {
	trace := func(seed uint64) []string {
		net := New(Options{Seed: seed, Loss: 0.1, MaxDelay: 5 * time.Millisecond})
		var out []string
		net.OnEvent = func(nd *Node, e scuttlebutt.Event) {
			out = append(out, fmt.Sprintf("%v %s %+v", net.Now.Sub(Epoch), nd.Core.ID(), e))
		}
		nodes := cluster(t, net, 12, func(c *scuttlebutt.Config) { c.Generation = 1 })
		for i, nd := range nodes {
			net.Do(nd, func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "k", fmt.Sprint(i)) })
		}
		net.Crash(nodes[3])
		net.Run(10 * time.Second)
		return append(out, fmt.Sprintf("delivered %d dropped %d", net.Delivered, net.Dropped))
	}
	a, b := trace(42), trace(42)
	if d := cmp.Diff(a, b); d != "" {
		t.Fatalf("two runs of seed 42 differ (-first +second):\n%s", d)
	}
	if len(a) < 100 {
		t.Fatalf("only %d events: the run did little", len(a))
	}
	if c := trace(43); cmp.Equal(a, c) {
		t.Fatal("seeds 42 and 43 gave the same run: the seed is not used")
	}
}
