package main

import (
	"net"
	"strings"
	"testing"
)

// TestDemoAddressTaken: when the page's address is taken, the demo says so,
// names the flag to change, and exits 1 without starting a cluster.
func TestDemoAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr strings.Builder
	code := runDemo([]string{"-nodes", "2", "-http", ln.Addr().String()}, &stdout, &stderr)
	if code != exitError {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitError, stderr.String())
	}
	if msg := stderr.String(); !strings.Contains(msg, "address already in use") || !strings.Contains(msg, "-http") {
		t.Fatalf("the demo said %q; want the address in use and the flag -http", msg)
	}
}

// TestDemoBadFlags: the demo's own flags and the agent's are checked, each
// with a message that names the flag.
func TestDemoBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-nodes", "0"}, "-nodes 0"},
		{[]string{"-config", "moon"}, "-config"},
		{[]string{"-http-max-watch", "0"}, "-http-max-watch"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr strings.Builder
		if code := runDemo(tc.args, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("demo %v: exit %d, %q; want exit %d saying %q", tc.args, code, stderr.String(), exitUsage, tc.want)
		}
	}
}
