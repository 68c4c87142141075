package simnet

import (
	"fmt"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

func TestThousandNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	start := time.Now()
	net := New(Options{Seed: 7, MaxDelay: 5 * time.Millisecond, CheckEvery: 100 * time.Millisecond})
	nodes := cluster(t, net, 1000, nil)
	t.Logf("built in %v", time.Since(start))
	if !net.RunUntil(func() bool { return behind(nodes) == "" }, 60*time.Second) {
		t.Fatal(behind(nodes))
	}
	if d := diverged(nodes); d != "" {
		t.Fatal(d)
	}
	t.Logf("converged at %v virtual, %v real", net.Now.Sub(Epoch), time.Since(start))
	t0 := net.Now
	net.Do(nodes[500], func(c *scuttlebutt.Core) { _ = c.Set(net.Now, "x", "1") })
	has := func() bool {
		for _, nd := range nodes {
			if v, _ := nd.Core.Lookup("node-500", "x"); v != "1" && nd != nodes[500] {
				return false
			}
		}
		return true
	}
	if !net.RunUntil(has, 30*time.Second) {
		n := 0
		for _, nd := range nodes {
			if v, _ := nd.Core.Lookup("node-500", "x"); v == "1" {
				n++
			}
		}
		t.Fatalf("only %d have it", n)
	}
	t.Logf("update spread in %v virtual; real total %v; oversize %d", net.Now.Sub(t0), time.Since(start), net.Oversize)
	dead := 0
	for _, nd := range nodes {
		for _, ni := range nd.Core.Nodes(net.Now) {
			if ni.Status != scuttlebutt.StatusAlive {
				dead++
			}
		}
	}
	fmt.Println("non-alive views:", dead, "bytes/node", nodes[3].BytesOut)
}
