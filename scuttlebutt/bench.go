package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runBenchHTTP is `scuttlebutt bench-http`: a load generator for the HTTP
// API. With -url it loads a running agent; with -cluster it first starts a
// demo cluster of -cluster - 1 nodes publishing -instances service
// instances and one agent joined to it, each in a process of its own, then
// loads the agent and reads its RSS.
func runBenchHTTP(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench-http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "", "`URL` to GET (with -cluster: the path on the started agent, default /services.json)")
	conc := fs.Int("c", 16, "concurrent connections")
	dur := fs.Duration("d", 10*time.Second, "`duration` of the load")
	gz := fs.Bool("gzip", false, "send Accept-Encoding: gzip (the body is then read compressed, not decompressed)")
	cluster := fs.Int("cluster", 0, "start a cluster of this many `nodes` (one agent process plus a demo process) and load the agent")
	instances := fs.Int("instances", 1000, "with -cluster: service `instances` published in the cluster")
	preset := fs.String("config", "lan", "with -cluster: timing `preset` of the nodes")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: scuttlebutt bench-http -url URL [flags]\n       scuttlebutt bench-http -cluster 128 -instances 1000 [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if _, err := parseFlags(fs, args, func(string) string { return "" }); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *conc < 1 || *dur <= 0 {
		fmt.Fprintln(stderr, "scuttlebutt bench-http: -c and -d must be positive")
		return exitUsage
	}
	if *cluster == 0 {
		if *target == "" {
			fmt.Fprintln(stderr, "scuttlebutt bench-http: want -url or -cluster")
			return exitUsage
		}
		res, err := loadHTTP(*target, *conc, *dur, *gz)
		if err != nil {
			fmt.Fprintf(stderr, "scuttlebutt bench-http: %v\n", err)
			return exitError
		}
		res.print(stdout)
		return exitOK
	}
	if *cluster < 2 {
		fmt.Fprintln(stderr, "scuttlebutt bench-http: -cluster wants at least 2 nodes")
		return exitUsage
	}
	path := *target
	if path == "" {
		path = "/services.json"
	}
	if err := benchCluster(stdout, stderr, *cluster, *instances, *preset, path, *conc, *dur, *gz); err != nil {
		fmt.Fprintf(stderr, "scuttlebutt bench-http: %v\n", err)
		return exitError
	}
	return exitOK
}

type loadResult struct {
	url            string
	requests, errs int
	bytes          int64
	elapsed        time.Duration
	p50, p99, pmax time.Duration
	conc           int
	gzip           bool
	firstErr       error
	responseBytes  int64
}

func (r loadResult) print(w io.Writer) {
	fmt.Fprintf(w, "GET %s  (%d connections, %s, gzip=%v)\n", r.url, r.conc, r.elapsed.Round(time.Millisecond), r.gzip)
	fmt.Fprintf(w, "  requests   %d (%d errors)\n", r.requests, r.errs)
	fmt.Fprintf(w, "  rate       %.0f req/s\n", float64(r.requests)/r.elapsed.Seconds())
	fmt.Fprintf(w, "  latency    p50 %s  p99 %s  max %s\n", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.pmax.Round(time.Microsecond))
	fmt.Fprintf(w, "  body       %d bytes per response, %.1f MB/s\n", r.responseBytes, float64(r.bytes)/r.elapsed.Seconds()/1e6)
	if r.firstErr != nil {
		fmt.Fprintf(w, "  first error: %v\n", r.firstErr)
	}
}

// loadHTTP GETs url from conc goroutines, each with its own keep-alive
// connection, for d.
func loadHTTP(url string, conc int, d time.Duration, gz bool) (loadResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() (int64, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return n, err
	}
	size, err := get()
	if err != nil {
		return loadResult{}, fmt.Errorf("GET %s: %w", url, err)
	}
	// Warm up the connections.
	warm := time.Now().Add(500 * time.Millisecond)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for time.Now().Before(warm) {
				get()
			}
		})
	}
	wg.Wait()

	type worker struct {
		lat   []time.Duration
		errs  int
		bytes int64
		first error
	}
	workers := make([]worker, conc)
	start := time.Now()
	end := start.Add(d)
	for i := range workers {
		wg.Go(func() {
			w := &workers[i]
			w.lat = make([]time.Duration, 0, 1<<16)
			for {
				t := time.Now()
				if !t.Before(end) {
					return
				}
				n, err := get()
				w.lat = append(w.lat, time.Since(t))
				w.bytes += n
				if err != nil {
					w.errs++
					if w.first == nil {
						w.first = err
					}
				}
			}
		})
	}
	wg.Wait()
	res := loadResult{url: url, elapsed: time.Since(start), conc: conc, gzip: gz, responseBytes: size}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.errs += w.errs
		res.bytes += w.bytes
		if res.firstErr == nil {
			res.firstErr = w.first
		}
	}
	res.requests = len(all)
	res.p50, res.p99, res.pmax = percentiles(all)
	return res, nil
}

// benchProcs is what the load commands (bench-http, bench-dns) measure: a
// demo process of nodes-1 nodes publishing the service instances (the
// other machines of a cluster), and one agent process joined to it.
type benchProcs struct {
	demo, agent *exec.Cmd
	base        string // the agent's HTTP API
}

// startBenchCluster starts the demo process and the agent, with agentArgs
// added to the agent's flags, and waits until the agent sees every node
// alive and every instance. stop ends both.
func startBenchCluster(stdout, stderr io.Writer, nodes, instances, services int, preset string, agentArgs ...string) (*benchProcs, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	demoHTTP, err := freeAddr()
	if err != nil {
		return nil, err
	}
	agentHTTP, err := freeAddr()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "starting a demo process of %d nodes with %d service instances (config %s)\n", nodes-1, instances, preset)
	b := &benchProcs{base: "http://" + agentHTTP}
	b.demo = exec.Command(exe, "demo", "-nodes", strconv.Itoa(nodes-1), "-instances", strconv.Itoa(instances),
		"-services", strconv.Itoa(services), "-lively=false", "-http", demoHTTP, "-dns", "", "-config", preset, "-log-level", "warn")
	b.demo.Stdout, b.demo.Stderr = io.Discard, stderr
	if err := b.demo.Start(); err != nil {
		return nil, err
	}
	// The demo's nodes stand for other machines: on this one they must not
	// take the CPU from the agent under test and the load generator.
	syscall.Setpriority(syscall.PRIO_PROCESS, b.demo.Process.Pid, 19)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alive := func(base string) (n int, self string) {
		ns, _ := fetchNodes(base)
		for _, nd := range ns {
			if nd.Status == "alive" {
				n++
			}
			if nd.Local {
				self = nd.Addr
			}
		}
		return n, self
	}
	var seed string
	if err := waitFor(ctx, func() bool {
		var n int
		n, seed = alive("http://" + demoHTTP)
		return n == nodes-1
	}); err != nil {
		b.stop()
		return nil, fmt.Errorf("the demo cluster did not converge to %d live nodes: %w", nodes-1, err)
	}
	fmt.Fprintf(stdout, "starting an agent process joined to %s\n", seed)
	args := append([]string{"agent", "-id", "bench-agent", "-bind", "127.0.0.1:0", "-http", agentHTTP,
		"-join", seed, "-config", preset, "-log-level", "warn"}, agentArgs...)
	b.agent = exec.Command(exe, args...)
	b.agent.Stdout, b.agent.Stderr = io.Discard, stderr
	if err := b.agent.Start(); err != nil {
		b.stop()
		return nil, err
	}
	t0 := time.Now()
	if err := waitFor(ctx, func() bool {
		n, _ := alive(b.base)
		return n == nodes && countInstances(b.base) == instances
	}); err != nil {
		b.stop()
		return nil, fmt.Errorf("the agent did not see %d live nodes and %d instances: %w", nodes, instances, err)
	}
	fmt.Fprintf(stdout, "the agent sees %d live nodes and %d instances (after %s)\n", nodes, instances, time.Since(t0).Round(time.Millisecond))
	return b, nil
}

func (b *benchProcs) stop() {
	if b.agent != nil {
		stopProcess(b.agent)
	}
	stopProcess(b.demo)
}

// benchCluster loads the agent of startBenchCluster over HTTP and reports
// its CPU and RSS.
func benchCluster(stdout, stderr io.Writer, nodes, instances int, preset, path string, conc int, d time.Duration, gz bool) error {
	b, err := startBenchCluster(stdout, stderr, nodes, instances, 0, preset)
	if err != nil {
		return err
	}
	defer b.stop()
	agent, base := b.agent, b.base
	rssIdle := readRSS(agent.Process.Pid, "VmRSS")

	idle0 := readCPU(agent.Process.Pid)
	time.Sleep(3 * time.Second) // a measurement window, not synchronisation
	idle := readCPU(agent.Process.Pid) - idle0
	fmt.Fprintf(stdout, "agent CPU    %.1f%% of a core while idle (gossip in a %d-node cluster)\n", 100*idle.Seconds()/3, nodes)

	cpu0 := readCPU(agent.Process.Pid)
	res, err := loadHTTP(base+path, conc, d, gz)
	if err != nil {
		return err
	}
	cpu := readCPU(agent.Process.Pid) - cpu0
	res.print(stdout)
	if res.requests > 0 && cpu > 0 {
		per := cpu / time.Duration(res.requests)
		fmt.Fprintf(stdout, "agent CPU    %s for the run (warm-up included): %s per request, about %.0f req/s per core\n",
			cpu.Round(time.Millisecond), per.Round(100*time.Nanosecond), float64(time.Second)/float64(per))
	}
	fmt.Fprintf(stdout, "agent RSS    %s before the load, %s after, peak %s (pid %d, %d-node cluster)\n",
		rssIdle, readRSS(agent.Process.Pid, "VmRSS"), readRSS(agent.Process.Pid, "VmHWM"), agent.Process.Pid, nodes)
	return nil
}

// percentiles returns the median, the 99th percentile and the largest of
// lat, which it sorts; zeros if it is empty.
func percentiles(lat []time.Duration) (p50, p99, pmax time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func stopProcess(c *exec.Cmd) {
	c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}

// waitFor polls cond every 100 ms until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func fetchNodes(base string) ([]nodeJSON, error) {
	var out struct {
		Nodes []nodeJSON `json:"nodes"`
	}
	return out.Nodes, getJSON(base+"/v1/nodes", &out)
}

func countInstances(base string) int {
	var out struct {
		Services []serviceSummary `json:"services"`
	}
	if getJSON(base+"/v1/services", &out) != nil {
		return -1
	}
	n := 0
	for _, s := range out.Services {
		n += s.Instances
	}
	return n
}

func getJSON(url string, out any) error {
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// readRSS returns a memory line of /proc/<pid>/status, e.g. "21.3 MB".
func readRSS(pid int, field string) string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) >= 1 {
				kb, _ := strconv.Atoi(fields[0])
				return fmt.Sprintf("%.1f MB", float64(kb)/1024)
			}
		}
	}
	return "?"
}

// readCPU returns the user and system CPU time a process used so far.
func readCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}
