// Command testapp is the program inside the docker package's test image: an
// HTTP server whose health the tests can flip, and the image's health check.
//
//	/app [-sick] [-addr :PORT]
//	              serve on :8080 (or -addr): GET /health answers 200, or 500 when
//	              sick, or nothing when hanging; POST /sick, POST /hang
//	              and POST /well (neither) flip it; POST /exit exits 3
//	/app health   exit 0 if GET http://127.0.0.1:8080/health is 200
//
// It must build with CGO_ENABLED=0: the image is FROM scratch. It speaks
// just enough HTTP/1.x over package net, without net/http, so that building
// it from a cold cache (as CI does, next to the race build) takes seconds
// rather than minutes.
package main

import (
	"bufio"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var addr = ":8080"

var sick, hang atomic.Bool

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "health" {
		os.Exit(check())
	}
	for i, a := range args {
		switch {
		case a == "-sick":
			sick.Store(true)
		case a == "-addr" && i+1 < len(args):
			addr = args[i+1]
		}
	}
	// PID 1 ignores SIGTERM unless it handles it: exit at once on it, so
	// that `docker stop` does not wait for its timeout. Set up before
	// listening: once the app answers, a stop is quick.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sigs
		os.Exit(0)
	}()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	// skip the headers; the tests send no bodies
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		reply(c, "400 Bad Request", "bad request")
		return
	}
	switch f[0] + " " + f[1] {
	case "GET /health":
		if hang.Load() {
			time.Sleep(5 * time.Second) // past any check's timeout; the connection's deadline ends it
			return
		}
		if sick.Load() {
			reply(c, "500 Internal Server Error", "sick")
			return
		}
		reply(c, "200 OK", "ok")
	case "POST /sick":
		sick.Store(true)
		reply(c, "200 OK", "")
	case "POST /hang":
		hang.Store(true)
		reply(c, "200 OK", "")
	case "POST /well":
		sick.Store(false)
		hang.Store(false)
		reply(c, "200 OK", "")
	case "POST /exit":
		// exit with an error status, for restart policies, once the
		// answer is out
		reply(c, "200 OK", "")
		go func() {
			time.Sleep(100 * time.Millisecond)
			os.Exit(3)
		}()
	default:
		reply(c, "200 OK", "testapp")
	}
}

func reply(c net.Conn, status, body string) {
	if body != "" {
		body += "\n"
	}
	c.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
		itoa(len(body)) + "\r\n\r\n" + body))
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func check() int {
	c, err := net.DialTimeout("tcp", "127.0.0.1"+addr, time.Second)
	if err != nil {
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")); err != nil {
		return 1
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200 ") {
		return 1
	}
	return 0
}
