package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// envInt reads an integer from the environment, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// procStatus returns a field of /proc/<pid>/status in kB (VmRSS, VmHWM).
func procStatus(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// openFDs returns the number of open files of a process.
func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// probeHealthz times GET /healthz on a new connection each time.
func probeHealthz(base string, n int) ([]time.Duration, error) {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var out []time.Duration
	for range n {
		start := time.Now()
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			return out, err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return out, fmt.Errorf("/healthz: %d", resp.StatusCode)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// The attack of issue 21: idle keep-alive connections (each after one
// request) and silent ones from many loopback source addresses, more in
// all than the agent's open-file limit. /healthz keeps answering, within
// 100 ms (median of 10 probes, each on a new connection), the agent keeps
// its connections at the bound and its RSS within a bound, warns once,
// and gives memory back when the clients leave.
//
// Sizes (SB_ATTACK_ADDRS x (SB_ATTACK_IDLE + SB_ATTACK_SILENT) connections
// against an agent limited to SB_ATTACK_NOFILE open files) default to 40 x
// (30 + 5) = 1,400 against 1,024: a few seconds on two cores.
func TestIdleConnectionAttack(t *testing.T) {
	bin := binary(t)
	addrs := envInt("SB_ATTACK_ADDRS", 40)
	idle := envInt("SB_ATTACK_IDLE", 30)
	silent := envInt("SB_ATTACK_SILENT", 5)
	nofile := envInt("SB_ATTACK_NOFILE", 1024)
	total := addrs * (idle + silent)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < uint64(total+256) {
		t.Skipf("the test process may open %d files, the attack needs %d", rl.Cur, total+256)
	}
	// The agent runs with its open-file limit (soft and hard) at nofile.
	wrapper := filepath.Join(t.TempDir(), "agent-ulimit")
	script := fmt.Sprintf("#!/bin/sh\nulimit -n %d || exit 1\nexec %s \"$@\"\n", nofile, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAgentProc(t, wrapper, "target")
	pid := a.cmd.Process.Pid
	host := strings.TrimPrefix(a.base, "http://")
	rssBefore := procStatus(t, pid, "VmRSS")

	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range addrs {
		wg.Go(func() {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}, Timeout: 5 * time.Second}
			for j := range idle + silent {
				c, err := d.Dial("tcp", host)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				if j >= idle {
					continue // silent: never sends a request
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host)
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	opened := time.Since(start)

	lat, err := probeHealthz(a.base, 10)
	rssHeld := procStatus(t, pid, "VmRSS")
	fds := openFDs(pid)
	t.Logf("%d connections from %d addresses opened in %v; agent: %d open files (limit %d), RSS %d kB before, %d kB held; /healthz %v",
		len(conns), addrs, opened.Round(time.Millisecond), fds, nofile, rssBefore, rssHeld, lat)
	if err != nil {
		t.Fatalf("/healthz during the attack: %v (answered %d of 10 first)", err, len(lat))
	}
	sorted := slices.Sorted(slices.Values(lat))
	if med := sorted[len(sorted)/2]; med > 100*time.Millisecond {
		t.Errorf("/healthz median %v during the attack, want under 100 ms (%v)", med, lat)
	}
	if fds > nofile-fdReserve+64 {
		t.Errorf("the agent holds %d open files, over its connection bound %d", fds, nofile-fdReserve)
	}
	const rssBound = 96 << 10 // kB
	if rssHeld > rssBound {
		t.Errorf("agent RSS %d kB during the attack, want under %d kB", rssHeld, rssBound)
	}
	eventually(t, 5*time.Second, "a warning naming -http-max-conns", func() bool {
		return strings.Contains(a.logs.String(), "-http-max-conns")
	})

	// The clients leave: the connections go, and so does their memory.
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	mu.Unlock()
	eventually(t, 10*time.Second, "the agent's connections closed", func() bool { return openFDs(pid) < 64 })
	var rssAfter int
	eventually(t, 10*time.Second, "memory given back", func() bool {
		rssAfter = procStatus(t, pid, "VmRSS")
		// A quarter of what the attack took, at least, is given back.
		return rssAfter <= rssHeld-(rssHeld-rssBefore)/4 || rssAfter < rssBefore+4<<10
	})
	t.Logf("agent RSS %d kB after the clients left (peak %d kB)", rssAfter, procStatus(t, pid, "VmHWM"))
	if _, err := probeHealthz(a.base, 1); err != nil {
		t.Fatalf("/healthz after the attack: %v", err)
	}
}
