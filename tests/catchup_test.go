package tests

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// The backlog, on real sockets: 16 nodes in this process on
// loopback, LAN rounds (200 ms); one writes keys of the largest value
// until its 4 MiB limit (about 4,400 keys; by datagrams alone they moved
// at about 19 keys a second), then one more key. The backlog must be on
// every node within 10 s of the first write, the key written after it
// within 1 s of the backlog's arrival everywhere, and a key written once
// it arrived within 1 s too. Every datagram stays within MaxPacketSize:
// the backlog went over TCP streams. The same holds encrypted: the streams
// are sealed and authenticated as a join's are.
func TestBacklogCatchesUpOnSockets(t *testing.T) {
	t.Run("plain", func(t *testing.T) { backlogOnSockets(t, false) })
	t.Run("encrypted", func(t *testing.T) { backlogOnSockets(t, true) })
}

func backlogOnSockets(t *testing.T, encrypt bool) {
	ms := startCluster(t, 16, func(c *scuttlebutt.Config) {
		c.GossipInterval = scuttlebutt.DefaultLANConfig().GossipInterval
		if encrypt {
			kr, err := scuttlebutt.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
			if err != nil {
				t.Fatal(err)
			}
			c.Keyring = kr
		}
	})
	waitFor(t, 10*time.Second, "16 nodes to know each other", func() bool {
		for _, m := range ms {
			for _, other := range ms {
				if statusAt(m, other.ID()) != scuttlebutt.StatusAlive {
					return false
				}
			}
		}
		return true
	})
	owner := ms[7]
	id := owner.ID()
	version := func(m *member) uint64 {
		info, _ := m.NodeInfo(id)
		return info.Version
	}
	value := strings.Repeat("v", scuttlebutt.MaxValueSize(1400))
	start := time.Now()
	keys := 0
	for ; ; keys++ {
		err := owner.UpdateLocal(fmt.Sprintf("k%05d", keys), value)
		var le *scuttlebutt.LimitError
		if errors.As(err, &le) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	backlog := version(owner)
	if err := owner.DeleteLocal("k00000"); err != nil { // the news after the backlog
		t.Fatal(err)
	}
	after := version(owner)
	wrote := time.Since(start)

	// reached returns when every node holds owner's state up to v,
	// polling every 10 ms, or fails the test after timeout.
	reached := func(v uint64, timeout time.Duration, what string) time.Time {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			behind := ""
			for _, m := range ms {
				if got := version(m); got < v {
					behind = fmt.Sprintf("%s holds %s at version %d of %d", m.ID(), id, got, v)
					break
				}
			}
			now := time.Now()
			if behind == "" {
				return now
			}
			if now.After(deadline) {
				t.Fatalf("%s: not everywhere after %v: %s", what, timeout, behind)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	arrived := reached(backlog, 10*time.Second-time.Since(start), fmt.Sprintf("the backlog of %d keys", keys))
	news := reached(after, time.Until(arrived.Add(time.Second)), "the key written after the backlog")
	if err := owner.UpdateLocal("later", "1"); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	later := reached(version(owner), time.Second, "a key written once the backlog arrived")
	var in, out uint64
	for _, m := range ms {
		s := m.Stats()
		in += s.CatchUpsIn
		out += s.CatchUpsOut
		if s.MaxPacketBytes > 1400 || m.gate.maxOut.Load() > 1400 {
			t.Errorf("%s sent a datagram of %d bytes", m.ID(), max(int64(s.MaxPacketBytes), m.gate.maxOut.Load()))
		}
	}
	t.Logf("%d keys written in %v; everywhere %v after the first write, by %d catch-up streams (%d started); the next key %v after that; a later one %v after its write",
		keys, wrote.Round(time.Millisecond), arrived.Sub(start).Round(time.Millisecond), in, out,
		news.Sub(arrived).Round(time.Millisecond), later.Sub(written).Round(time.Millisecond))
	if in == 0 {
		t.Error("no catch-up stream was applied")
	}
	for _, m := range ms {
		for reason, n := range m.Stats().Dropped {
			if strings.HasPrefix(reason, "stream_") {
				t.Errorf("%s refused %d streams: %s", m.ID(), n, reason)
			}
		}
	}
}
