package failure_test

import (
	"fmt"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt/failure"
)

// A peer heartbeats every 100 ms and then falls silent. With threshold 8 the
// exponential model convicts it after 8 * ln10 * mean ≈ 18.4 means, about
// 1.84 s here.
func Example() {
	d := failure.New(failure.Config{InitialInterval: 100 * time.Millisecond})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	for i := 0; i < 20; i++ {
		now = start.Add(time.Duration(i) * 100 * time.Millisecond)
		d.Tick(now)
		d.Heartbeat("node-1", now)
	}
	mean, _ := d.Mean("node-1")
	fmt.Println("mean:", mean)
	for _, silence := range []time.Duration{time.Second, 1800 * time.Millisecond, 1900 * time.Millisecond} {
		t := now.Add(silence)
		fmt.Printf("after %v: phi %.2f, suspect %v\n", silence, d.Phi("node-1", t), d.Suspect("node-1", t))
	}
	// Output:
	// mean: 100ms
	// after 1s: phi 4.34, suspect false
	// after 1.8s: phi 7.82, suspect false
	// after 1.9s: phi 8.25, suspect true
}
