package scuttlebutt_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/internal/memnet"
)

// Nodes on the in-memory network catch up over its streams: 300 keys of
// the largest value written on one of three nodes reach the others by
// catch-up streams, which the receivers apply and acknowledge.
func TestNodesCatchUpOverStreams(t *testing.T) {
	net := memnet.New()
	a := memNode(t, net, "a", nil)
	b := memNode(t, net, "b", nil)
	c := memNode(t, net, "c", nil)
	for _, n := range []*scuttlebutt.Node{b, c} {
		if err := n.Seed([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	value := strings.Repeat("v", scuttlebutt.MaxValueSize(1400))
	for i := range 300 {
		if err := a.UpdateLocal(fmt.Sprintf("k%03d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := a.NodeInfo("a")
	waitFor(t, 10*time.Second, "the backlog on b and c", func() bool {
		for _, n := range []*scuttlebutt.Node{b, c} {
			if info, _ := n.NodeInfo("a"); info.Version < want.Version {
				return false
			}
		}
		return true
	})
	var in, out uint64
	for _, n := range []*scuttlebutt.Node{a, b, c} {
		s := n.Stats()
		in += s.CatchUpsIn
		out += s.CatchUpsOut
	}
	if in == 0 || out < in {
		t.Fatalf("catch-ups: %d applied, %d started", in, out)
	}
	if v, ok := c.Lookup("a", "k299"); !ok || v != value {
		t.Fatalf("c: Lookup(a, k299) = %d bytes, %v", len(v), ok)
	}
}
