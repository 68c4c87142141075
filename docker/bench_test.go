package docker

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// BenchmarkStartToVisible measures, per iteration, the time from `docker
// start` of a labelled container to its service being visible on another
// node, and from `docker stop` to its disappearance there. Two real nodes on
// 127.0.0.1 gossip every 100 ms; the adapter publishes through node 1
// (events coalesced for 100 ms, the default) and Instances runs on node 2,
// checked at every change node 2 hears of. It reports the p50 and max of
// both (start, stop); of the engine's start and stop calls alone (start-call,
// stop-call: the engine's part, which the adapter cannot shorten); and of the
// times from the engine's own start and die events to visibility on node 2
// (start-event, die-event: the adapter's and gossip's part):
//
//	CI=true go test ./docker -run '^$' -bench StartToVisible -benchtime 20x
func BenchmarkStartToVisible(b *testing.B) {
	cli := engine(b)
	seen := newChanges()
	n1, n2 := nodePair(b, seen)
	opts := testOptions(b)
	opts.Coalesce = 100 * time.Millisecond
	opts.Resync = time.Hour // events only
	runAdapter(b, n1, cli, opts)
	ctx := context.Background()

	// the engine's timestamps of the start and die events of this run's
	// containers
	var (
		emu        sync.Mutex
		startedAt  = map[string]time.Time{}
		diedAt     = map[string]time.Time{}
		ectx, stop = context.WithCancel(ctx)
	)
	defer stop()
	evs := cli.Events(ectx, client.EventsListOptions{
		Filters: make(client.Filters).Add("type", "container").Add("label", runLabel+"="+runID),
	})
	go func() {
		for {
			select {
			case m := <-evs.Messages:
				emu.Lock()
				switch m.Action {
				case events.ActionStart:
					startedAt[m.Actor.ID] = time.Unix(0, m.TimeNano)
				case events.ActionDie:
					diedAt[m.Actor.ID] = time.Unix(0, m.TimeNano)
				}
				emu.Unlock()
			case <-evs.Err:
				return
			}
		}
	}()
	eventTime := func(m map[string]time.Time, id string) time.Time {
		var at time.Time
		eventually(b, 10*time.Second, "the engine's event", func() bool {
			emu.Lock()
			defer emu.Unlock()
			at = m[id]
			return !at.IsZero()
		})
		return at
	}

	var starts, stops, startCalls, stopCalls, startEvents, dieEvents []time.Duration
	for b.Loop() {
		b.StopTimer()
		id := startContainer(b, spec{publish: true, noStart: true, labels: map[string]string{"scuttlebutt.service": "bench"}})
		count := func() int {
			n := 0
			for _, in := range Instances(n2, "bench", false) {
				if in.Container == shortID(id) {
					n++
				}
			}
			return n
		}
		b.StartTimer()

		t0 := time.Now()
		if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			b.Fatal(err)
		}
		startCalls = append(startCalls, time.Since(t0))
		if !seen.await(10*time.Second, func() bool { return count() == 1 }) {
			b.Fatal("service not visible on node 2 after 10 s")
		}
		visible := time.Now()
		starts = append(starts, visible.Sub(t0))

		b.StopTimer()
		ready(b, id) // handles SIGTERM: the stop below does not wait 10 s
		b.StartTimer()

		t0 = time.Now()
		if _, err := cli.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil { // SIGTERM: the app exits at once
			b.Fatal(err)
		}
		stopCalls = append(stopCalls, time.Since(t0))
		if !seen.await(10*time.Second, func() bool { return count() == 0 }) {
			b.Fatal("service still visible on node 2 10 s after the stop")
		}
		gone := time.Now()
		stops = append(stops, gone.Sub(t0))

		b.StopTimer()
		startEvents = append(startEvents, visible.Sub(eventTime(startedAt, id)))
		dieEvents = append(dieEvents, gone.Sub(eventTime(diedAt, id)))
		cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
		b.StartTimer()
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"-max-ms")
	}
	report("start", starts)
	report("stop", stops)
	report("start-call", startCalls)
	report("stop-call", stopCalls)
	report("start-event", startEvents)
	report("die-event", dieEvents)
	b.ReportMetric(0, "ns/op")
}
