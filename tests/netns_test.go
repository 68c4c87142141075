package tests

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// A lab is a set of network namespaces standing for hosts: each host has
// its own namespace with one interface, eth0, whose veth peer sits on a
// bridge in the lab's own hub namespace. The hosts' addresses (labNet) exist
// only inside these namespaces, and the root namespace has no route to
// them: no packet leaves the lab. Faults are nftables rules in a host's
// namespace (table inet faults, chains in and out).
//
// Namespace names start with the test process's pid (labPrefix), so
// concurrent runs do not collide and namespaces of crashed runs can be
// swept.
type lab struct {
	t      testing.TB
	prefix string
	hub    string
	hosts  []string // namespace of host i+1
}

// labNet is the hosts' subnet; host i (from 1) is 10.213.0.i.
const labNet = "10.213.0."

// labPrefix is the prefix of every lab namespace; the pid follows.
const labPrefix = "sbfault"

// hostAddr is the address of host i (from 1).
func hostAddr(i int) string { return labNet + strconv.Itoa(i) }

// needNetns skips t (or fails it under CI=true) unless this process can
// create network namespaces and run nft in them.
func needNetns(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault-injection suite: skipped with -short")
	}
	why := ""
	switch {
	case runtime.GOOS != "linux":
		why = "network namespaces need Linux"
	case os.Geteuid() != 0:
		why = "network namespaces need root"
	default:
		for _, tool := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(tool); err != nil {
				why = tool + " not found (apt-get install iproute2 nftables)"
			}
		}
	}
	if why == "" {
		probe := fmt.Sprintf("%s%d-probe", labPrefix, os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
			why = fmt.Sprintf("ip netns add: %v: %s", err, out)
		} else {
			if out, err := exec.Command("ip", "netns", "exec", probe, "nft", "add", "table", "inet", "probe").CombinedOutput(); err != nil {
				why = fmt.Sprintf("nft in a namespace: %v: %s", err, out)
			}
			exec.Command("ip", "netns", "del", probe).Run()
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("fault-injection suite cannot run under CI=true: %s", why)
	}
	t.Skipf("fault-injection suite skipped: %s", why)
}

// run runs a command and fails the test if it fails.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// sweepStaleNamespaces deletes lab namespaces left by runs whose process
// is gone (a crashed or killed test run).
func sweepStaleNamespaces(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, labPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its run is still going
		}
		killNamespaceProcs(name)
		if err := exec.Command("ip", "netns", "del", name).Run(); err == nil {
			t.Logf("swept stale namespace %s", name)
		}
	}
}

// killNamespaceProcs kills what still runs in a namespace.
func killNamespaceProcs(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// newLab creates n hosts on one bridge; everything is removed in
// t.Cleanup (register agents after it, so they stop first).
func newLab(t testing.TB, n int) *lab {
	t.Helper()
	needNetns(t)
	sweepStaleNamespaces(t)
	labSeq++
	l := &lab{t: t, prefix: fmt.Sprintf("%s%d-%d", labPrefix, os.Getpid(), labSeq)}
	l.hub = l.prefix + "-hub"
	t.Cleanup(l.remove)
	run(t, "ip", "netns", "add", l.hub)
	run(t, "ip", "-n", l.hub, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.hub, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-h%d", l.prefix, i)
		l.hosts = append(l.hosts, ns)
		port := fmt.Sprintf("veth%d", i)
		run(t, "ip", "netns", "add", ns)
		run(t, "ip", "-n", l.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		run(t, "ip", "-n", l.hub, "link", "set", port, "master", "br0", "up")
		run(t, "ip", "-n", ns, "addr", "add", hostAddr(i)+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		l.nft(i, `table inet faults {
			chain in { type filter hook input priority 0; policy accept; }
			chain out { type filter hook output priority 0; policy accept; }
		}`)
	}
	return l
}

// labSeq numbers the labs of this process.
var labSeq int

func (l *lab) remove() {
	for _, ns := range append(l.hosts, l.hub) {
		killNamespaceProcs(ns)
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// ns is the namespace of host i (from 1).
func (l *lab) ns(i int) string { return l.hosts[i-1] }

// nft runs an nft script in host i's namespace.
func (l *lab) nft(i int, script string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns(i), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("nft in host %d: %v\n%s\n%s", i, err, script, out)
	}
}

// loss drops pct percent of the packets host i receives from the lab
// network, at random (so pct % on every link into it).
func (l *lab) loss(i, pct int) {
	l.nft(i, fmt.Sprintf(`add rule inet faults in iifname "eth0" numgen random mod 100 < %d counter drop`, pct))
}

// deafTo makes host i drop everything it receives from hosts from.
func (l *lab) deafTo(i int, from ...int) {
	l.nft(i, fmt.Sprintf(`add rule inet faults in ip saddr { %s } counter drop`, addrSet(from)))
}

// mute makes host i drop everything it sends to the lab network: the
// others no longer hear it, it still hears them.
func (l *lab) mute(i int) {
	l.nft(i, `add rule inet faults out oifname "eth0" counter drop`)
}

// dropped returns how many packets host i's fault rules have dropped
// since they were added: proof that a fault was real.
func (l *lab) dropped(i int) int {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.ns(i), "nft", "list", "table", "inet", "faults").CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft list in host %d: %v\n%s", i, err, out)
	}
	n := 0
	f := strings.Fields(string(out))
	for k := 0; k+1 < len(f); k++ {
		if f[k] == "packets" {
			p, _ := strconv.Atoi(f[k+1])
			n += p
		}
	}
	return n
}

// heal removes every fault of host i.
func (l *lab) heal(i int) {
	l.nft(i, "flush chain inet faults in\nflush chain inet faults out")
}

// healAll removes every fault of every host.
func (l *lab) healAll() {
	for i := range l.hosts {
		l.heal(i + 1)
	}
}

func addrSet(hosts []int) string {
	as := make([]string, len(hosts))
	for k, h := range hosts {
		as[k] = hostAddr(h)
	}
	return strings.Join(as, ", ")
}

// hasNetem reports whether the kernel has tc's netem qdisc (for delay
// and reordering); probed once, in a throwaway namespace.
var hasNetem = sync.OnceValue(func() bool {
	probe := fmt.Sprintf("%s%d-netem", labPrefix, os.Getpid())
	if exec.Command("ip", "netns", "add", probe).Run() != nil {
		return false
	}
	defer exec.Command("ip", "netns", "del", probe).Run()
	return exec.Command("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms").Run() == nil
})

// netem sets a netem qdisc with args (for instance "delay", "50ms",
// "20ms") on host i's outgoing packets; healing does not remove it.
func (l *lab) netem(i int, args ...string) {
	l.t.Helper()
	run(l.t, "ip", append([]string{"netns", "exec", l.ns(i), "tc", "qdisc", "replace", "dev", "eth0", "root", "netem"}, args...)...)
}

// dialer returns a DialContext that opens its sockets in namespace ns:
// the dialing goroutine's thread enters ns, creates and connects the
// socket, and goes back; the socket stays in ns. If the thread cannot go
// back it stays locked and dies with its goroutine.
func dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("own namespace: %w", err)}
				return
			}
			defer unix.Close(home)
			target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("namespace %s: %w", ns, err)}
				return
			}
			defer unix.Close(target)
			if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("enter namespace %s: %w", ns, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
				if c != nil {
					c.Close()
				}
				ch <- result{nil, fmt.Errorf("leave namespace %s: %w", ns, err)}
				return // the thread stays locked and exits with this goroutine
			}
			runtime.UnlockOSThread()
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
