package docker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// A Go program publishes its own service with the verdict of a health
// check, through the node it embeds: what `scuttlebutt watch` does for
// programs that do not embed a node. Any node of the cluster answers
// docker.Instances(node, "web", true) from its local state.
func ExampleWatch() {
	cfg := scuttlebutt.DefaultLocalConfig()
	cfg.ID = "example"
	cfg.BindAddr = "127.0.0.1:0"
	node, err := scuttlebutt.Create(cfg)
	if err != nil {
		panic(err)
	}
	defer node.Close()

	// The service: healthy until told otherwise.
	var code atomic.Int32
	code.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- docker.Watch(ctx, node,
			docker.Registration{Service: "web", ID: "web-1", Host: "127.0.0.1", Port: 8080},
			health.HTTP{URL: srv.URL + "/health"},
			health.Config{Interval: 50 * time.Millisecond, Thresholds: health.Thresholds{Rise: 1, Fall: 2}},
			docker.PublishOptions{TTL: 10 * time.Second}, nil)
	}()

	// wait polls the node until cond holds.
	wait := func(cond func() bool) {
		for deadline := time.Now().Add(10 * time.Second); !cond() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait(func() bool { return len(docker.Instances(node, "web", true)) == 1 })
	in := docker.Instances(node, "web", true)[0]
	fmt.Println(in.Key, in.Addr(), in.Check.Status)

	code.Store(http.StatusInternalServerError) // two failed checks: failing
	wait(func() bool { return len(docker.Instances(node, "web", true)) == 0 })
	in = docker.Instances(node, "web", false)[0]
	fmt.Println(in.Verdict(time.Now()), in.Check.Output)

	cancel() // withdraws the record
	if err := <-done; err != nil {
		panic(err)
	}
	fmt.Println(len(docker.Instances(node, "web", false)), "instances after Watch returned")
	// Output:
	// svc/web/web-1 127.0.0.1:8080 passing
	// failing HTTP 500: 500 Internal Server Error
	// 0 instances after Watch returned
}
