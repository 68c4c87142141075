// Command testapp is the program inside the docker package's test image: an
// HTTP server whose health the tests can flip, and the image's health check.
//
//	/app [-addr :8080] [-sick]  serve: GET /health answers 200 or 503,
//	                     POST /sick and POST /well flip it
//	/app health          exit 0 if GET http://127.0.0.1:8080/health is 200
//
// It must build with CGO_ENABLED=0: the image is FROM scratch.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "health" {
		os.Exit(check())
	}
	addr := flag.String("addr", ":8080", "listen address")
	startSick := flag.Bool("sick", false, "start with /health failing")
	flag.Parse()

	var sick atomic.Bool
	sick.Store(*startSick)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /sick", func(w http.ResponseWriter, _ *http.Request) { sick.Store(true) })
	mux.HandleFunc("POST /well", func(w http.ResponseWriter, _ *http.Request) { sick.Store(false) })
	mux.HandleFunc("POST /exit", func(w http.ResponseWriter, _ *http.Request) {
		// exit with an error status, for restart policies, once the
		// answer is out
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		go func() {
			time.Sleep(100 * time.Millisecond)
			os.Exit(3)
		}()
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "testapp") })

	srv := &http.Server{Addr: *addr, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func check() int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://127.0.0.1:8080/health")
	if err != nil {
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
