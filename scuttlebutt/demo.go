package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// demoServices are the services the demo publishes, round robin.
var demoServices = []string{"web", "api", "db", "cache", "queue"}

// runDemo is `scuttlebutt demo`: a small cluster on loopback in one
// process, the first node serving the web page. The first node takes every
// agent flag (its defaults changed for one host: -bind 127.0.0.1:0,
// -config local, -id node-01); the others share its gossip
// settings and keyring, take the defaults of every other flag, and serve
// no HTTP.
func runDemo(args []string, stdout, stderr io.Writer) int {
	var c agentConfig
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	for name, v := range map[string]string{"bind": "127.0.0.1:0", "config": "local", "id": "node-01"} {
		setDefault(fs, name, v)
	}
	nodes := fs.Int("nodes", 5, "`number` of nodes")
	instances := fs.Int("instances", -1, "`number` of service instances to publish, as Docker adapter records (default: 2 per node)")
	services := fs.Int("services", 0, "`number` of distinct service names (default: 5, or instances/50 for more than 250)")
	lively := fs.Bool("lively", true, "change keys and health now and then, so the page has something to show")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: scuttlebutt demo [flags]

Runs a cluster of -nodes nodes on 127.0.0.1 in this process; the first serves the
web page and the HTTP API on -http. Ctrl-C stops it (every node leaves).
Every flag of scuttlebutt agent applies to the first node; the other nodes
share its -config, -cluster and keyring and serve no HTTP.

Flags:
`)
		fs.PrintDefaults()
	}
	rest, err := parseFlags(fs, args, func(string) string { return "" })
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "scuttlebutt demo: %v\n", err)
		return exitUsage
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "scuttlebutt demo: unexpected argument %q; see scuttlebutt demo -h\n", rest[0])
		return exitUsage
	}
	if *nodes < 1 || *nodes > 1000 {
		fmt.Fprintf(stderr, "scuttlebutt demo: -nodes %d: want 1 to 1000\n", *nodes)
		return exitUsage
	}
	if *instances < 0 {
		*instances = 2 * *nodes
	}
	if *services <= 0 {
		*services = max(len(demoServices), *instances/50)
	}
	base, err := c.gossipConfig()
	if err != nil {
		fmt.Fprintf(stderr, "scuttlebutt demo: %v\n", err)
		return exitUsage
	}
	log := c.logger(stderr)
	quiet := slog.New(slog.DiscardHandler)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	records := demoRecords(*nodes, *instances, *services)
	agents := make([]*agent, 0, *nodes)
	defer func() {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Go(func() { a.shutdown(true) })
		}
		wg.Wait()
	}()
	for i := range *nodes {
		cfg := *base
		ac, alog, libLog := c, log, c.libLogger(stderr, log)
		if i > 0 {
			ac, alog, libLog = defaultAgentConfig(), quiet, nil
			ac.preset, ac.http, ac.dnsOpts.addr.addr = c.preset, "", "" // only the first node serves HTTP and DNS
			cfg.ID, cfg.BindAddr, cfg.AdvertiseAddr = fmt.Sprintf("node-%02d", i+1), "127.0.0.1:0", ""
			ac.join = []string{agents[0].node.Addr()}
			if i > 1 {
				ac.join = append(ac.join, agents[rand.IntN(i)].node.Addr())
			}
		}
		cfg.InitialState = map[string]string{"role": []string{"frontend", "backend", "storage"}[i%3], "load": "0.00"}
		for k, v := range records[i] {
			cfg.InitialState[k] = v
		}
		a, err := ac.launch(&cfg, alog, libLog, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "scuttlebutt demo: %v\n", err)
			return exitError
		}
		agents = append(agents, a)
		go func() {
			if a.waitDecommission(ctx) {
				log.Info("demo node decommissioned: leaving", "node", a.node.ID())
				a.shutdown(true)
			}
		}()
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	waitFor(wctx, func() bool {
		alive := 0
		for _, ni := range agents[0].node.Nodes() {
			if ni.Status == scuttlebutt.StatusAlive {
				alive++
			}
		}
		return alive == len(agents)
	})
	cancel()
	url := "http://" + agents[0].httpAddr() + "/"
	addr := ""
	if agents[0].httpAddr() != "127.0.0.1:7777" {
		addr = " -addr " + agents[0].httpAddr()
	}
	fmt.Fprintf(stdout, `scuttlebutt demo: %d nodes on 127.0.0.1, %d service instances.

  web page:  %s
  try:       scuttlebutt members%s
             scuttlebutt services%s
             scuttlebutt hosts -label web%s
             scuttlebutt kv set%s greeting hello
             scuttlebutt decommission%s node-02
             curl %sservices.json
%s
Ctrl-C stops the demo (every node leaves).
`, *nodes, *instances, url, addr, addr, addr, addr, addr, url, demoDNSLine(agents[0]))

	if *lively {
		go demoLife(ctx, agents, records)
	}
	<-ctx.Done()
	stop()
	fmt.Fprintln(stdout, "stopping: every node leaves")
	return exitOK
}

// demoDNSLine is the demo's hint of a DNS query, or nothing without DNS.
func demoDNSLine(a *agent) string {
	if a.dns == nil {
		return ""
	}
	host, port, _ := net.SplitHostPort(a.dns.addr)
	return fmt.Sprintf("             dig @%s -p %s web.service.%s SRV\n", host, port, a.dns.domain)
}

// setDefault changes the default of flag name to v.
func setDefault(fs *flag.FlagSet, name, v string) {
	f := fs.Lookup(name)
	f.DefValue = v
	if err := f.Value.Set(v); err != nil {
		panic(fmt.Sprintf("default of -%s: %v", name, err)) // a programming error: the defaults are constants
	}
}

// demoRecords spreads instances over nodes: records[node][key] = value.
func demoRecords(nodes, instances, services int) []map[string]string {
	out := make([]map[string]string, nodes)
	for i := range out {
		out[i] = map[string]string{}
	}
	now := time.Now().Unix()
	for i := range instances {
		name := demoServiceName(i%services, services)
		cid := fmt.Sprintf("%012x", 0xdec0000000+i)
		r := docker.Record{
			V: docker.RecordVersion, Service: name, Container: cid,
			Name: fmt.Sprintf("%s-%d", name, i/services+1), Image: "demo/" + name + ":1.0",
			Host: "127.0.0.1", Port: 20000 + i, Private: 8080, Proto: "tcp",
			Health: docker.HealthHealthy, State: docker.StateRunning, Started: now,
		}
		if i%7 == 3 {
			r.Health = docker.HealthNone
		}
		b, _ := json.Marshal(r)
		key := docker.KeyPrefix + name + "/" + cid + "/8080/tcp"
		out[i%nodes][key] = string(b)
	}
	return out
}

func demoServiceName(i, n int) string {
	if n <= len(demoServices) {
		return demoServices[i]
	}
	return "svc-" + strconv.Itoa(i)
}

// demoLife changes a load key every 2 s and flips the health of one
// instance every 7 s.
func demoLife(ctx context.Context, agents []*agent, records []map[string]string) {
	load := time.NewTicker(2 * time.Second)
	health := time.NewTicker(7 * time.Second)
	defer load.Stop()
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-load.C:
			a := agents[rand.IntN(len(agents))]
			a.pub.UpdateLocal("load", strconv.FormatFloat(rand.Float64()*4, 'f', 2, 64))
		case <-health.C:
			i := rand.IntN(len(agents))
			for k, v := range records[i] {
				r, err := docker.DecodeRecord(v)
				if err != nil {
					continue
				}
				if r.Health == docker.HealthUnhealthy {
					r.Health = docker.HealthHealthy
				} else {
					r.Health = docker.HealthUnhealthy
				}
				b, _ := json.Marshal(r)
				records[i][k] = string(b)
				if err := agents[i].pub.UpdateLocal(k, string(b)); err != nil && !errors.Is(err, scuttlebutt.ErrClosed) {
					return
				}
				break
			}
		}
	}
}
