package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// runBenchDNS is `scuttlebutt bench-dns`: a load generator for the agent's
// DNS server. With -addr it loads a running server; with -cluster it first
// starts a demo process of -cluster - 1 nodes publishing -instances
// instances of -services services and one agent joined to it, then loads
// the agent's DNS server and reads its RSS.
func runBenchDNS(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench-dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "`address` of a DNS server to load")
	conc := fs.Int("c", 8, "concurrent clients, each with its own UDP socket and one query in flight")
	dur := fs.Duration("d", 10*time.Second, "`duration` of the load")
	domain := fs.String("domain", "scuttlebutt", "DNS `domain` of the names asked")
	var names listFlag
	fs.Var(&names, "service", "service `name` to ask for, repeatable (with -cluster: every service of the cluster)")
	cluster := fs.Int("cluster", 0, "start a cluster of this many `nodes` (one agent process plus a demo process) and load the agent")
	instances := fs.Int("instances", 1000, "with -cluster: service `instances` published in the cluster")
	services := fs.Int("services", 50, "with -cluster: distinct service `names`")
	preset := fs.String("config", "lan", "with -cluster: timing `preset` of the nodes")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: scuttlebutt bench-dns -addr HOST:PORT -service NAME [flags]\n       scuttlebutt bench-dns -cluster 128 -instances 1000 -services 50 [flags]\n\nAsks A and SRV questions in turn.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if _, err := parseFlags(fs, args, func(string) string { return "" }); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *conc < 1 || *dur <= 0 || *services < 1 {
		fmt.Fprintln(stderr, "scuttlebutt bench-dns: -c, -d and -services must be positive")
		return exitUsage
	}
	if *cluster == 0 {
		if *addr == "" || len(names) == 0 {
			fmt.Fprintln(stderr, "scuttlebutt bench-dns: want -addr and -service, or -cluster")
			return exitUsage
		}
		res, err := loadDNS(*addr, dnsQuestions(names, *domain), *conc, *dur)
		if err != nil {
			fmt.Fprintf(stderr, "scuttlebutt bench-dns: %v\n", err)
			return exitError
		}
		res.print(stdout)
		return exitOK
	}
	if *cluster < 2 {
		fmt.Fprintln(stderr, "scuttlebutt bench-dns: -cluster wants at least 2 nodes")
		return exitUsage
	}
	if err := benchDNSCluster(stdout, stderr, *cluster, *instances, *services, *preset, *conc, *dur); err != nil {
		fmt.Fprintf(stderr, "scuttlebutt bench-dns: %v\n", err)
		return exitError
	}
	return exitOK
}

// dnsQuestions returns an A and an SRV question for each service.
func dnsQuestions(services []string, domain string) []dns.Question {
	var out []dns.Question
	for _, s := range services {
		name := dns.Fqdn(s + ".service." + domain)
		out = append(out, dns.Question{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET},
			dns.Question{Name: name, Qtype: dns.TypeSRV, Qclass: dns.ClassINET})
	}
	return out
}

type dnsLoadResult struct {
	addr                  string
	queries, errs, answer int
	elapsed               time.Duration
	p50, p99, pmax        time.Duration
	conc                  int
	firstErr              error
}

func (r dnsLoadResult) print(w io.Writer) {
	fmt.Fprintf(w, "DNS %s  (%d clients, %s)\n", r.addr, r.conc, r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  queries    %d (%d errors or timeouts, %d answers without records)\n", r.queries, r.errs, r.answer)
	fmt.Fprintf(w, "  rate       %.0f queries/s\n", float64(r.queries)/r.elapsed.Seconds())
	fmt.Fprintf(w, "  latency    p50 %s  p99 %s  max %s\n", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.pmax.Round(time.Microsecond))
	if r.firstErr != nil {
		fmt.Fprintf(w, "  first error: %v\n", r.firstErr)
	}
}

// loadDNS asks qs in turn from conc clients over UDP for d.
func loadDNS(addr string, qs []dns.Question, conc int, d time.Duration) (dnsLoadResult, error) {
	ask := func(conn net.Conn, q dns.Question, id uint16, buf []byte) (int, error) {
		m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: id, RecursionDesired: false}, Question: []dns.Question{q}}
		m.SetEdns0(4096, false)
		b, err := m.Pack()
		if err != nil {
			return 0, err
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write(b); err != nil {
			return 0, err
		}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return 0, err
			}
			var r dns.Msg
			if r.Unpack(buf[:n]) != nil || r.Id != id {
				continue // a late answer to a timed-out query
			}
			if r.Rcode != dns.RcodeSuccess {
				return 0, fmt.Errorf("%s %s: %s", q.Name, dns.TypeToString[q.Qtype], dns.RcodeToString[r.Rcode])
			}
			return len(r.Answer), nil
		}
	}
	probe, err := net.Dial("udp", addr)
	if err != nil {
		return dnsLoadResult{}, err
	}
	if _, err := ask(probe, qs[0], 1, make([]byte, 65535)); err != nil {
		probe.Close()
		return dnsLoadResult{}, fmt.Errorf("first query: %w", err)
	}
	probe.Close()

	type worker struct {
		lat        []time.Duration
		errs, none int
		first      error
	}
	workers := make([]worker, conc)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range workers {
		wg.Go(func() {
			w := &workers[i]
			conn, err := net.Dial("udp", addr)
			if err != nil {
				w.errs, w.first = 1, err
				return
			}
			defer conn.Close()
			buf := make([]byte, 65535)
			w.lat = make([]time.Duration, 0, 1<<18)
			for j := i; ; j++ {
				t := time.Now()
				if !t.Before(end) {
					return
				}
				n, err := ask(conn, qs[j%len(qs)], uint16(j), buf)
				w.lat = append(w.lat, time.Since(t))
				switch {
				case err != nil:
					w.errs++
					if w.first == nil {
						w.first = err
					}
				case n == 0:
					w.none++
				}
			}
		})
	}
	wg.Wait()
	res := dnsLoadResult{addr: addr, elapsed: time.Since(start), conc: conc}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.errs += w.errs
		res.answer += w.none
		if res.firstErr == nil {
			res.firstErr = w.first
		}
	}
	res.queries = len(all)
	res.p50, res.p99, res.pmax = percentiles(all)
	return res, nil
}

// benchDNSCluster starts a demo process of nodes-1 nodes and an agent
// process with a DNS server joined to it, waits until the agent sees every
// instance, loads its DNS server and reports its RSS and CPU.
func benchDNSCluster(stdout, stderr io.Writer, nodes, instances, services int, preset string, conc int, d time.Duration) error {
	dnsAddr, err := freeUDPAddr()
	if err != nil {
		return err
	}
	b, err := startBenchCluster(stdout, stderr, nodes, instances, services, preset, "-dns", dnsAddr)
	if err != nil {
		return err
	}
	defer b.stop()
	agent, base := b.agent, b.base
	var out struct {
		Services []serviceSummary `json:"services"`
	}
	if err := getJSON(base+"/v1/services", &out); err != nil {
		return err
	}
	var names []string
	for _, s := range out.Services {
		names = append(names, s.Name)
	}
	fmt.Fprintf(stdout, "the agent sees %d nodes, %d instances of %d services\n", nodes, instances, len(names))
	rssIdle := readRSS(agent.Process.Pid, "VmRSS")
	cpu0 := readCPU(agent.Process.Pid)
	res, err := loadDNS(dnsAddr, dnsQuestions(names, "scuttlebutt"), conc, d)
	if err != nil {
		return err
	}
	cpu := readCPU(agent.Process.Pid) - cpu0
	res.print(stdout)
	if res.queries > 0 && cpu > 0 {
		fmt.Fprintf(stdout, "agent CPU    %s for the run: %s per query\n", cpu.Round(time.Millisecond),
			(cpu / time.Duration(res.queries)).Round(100*time.Nanosecond))
	}
	fmt.Fprintf(stdout, "agent RSS    %s before the load, %s after, peak %s (pid %d)\n",
		rssIdle, readRSS(agent.Process.Pid, "VmRSS"), readRSS(agent.Process.Pid, "VmHWM"), agent.Process.Pid)
	return nil
}

// freeUDPAddr returns a loopback address whose port is free for UDP and
// TCP now.
func freeUDPAddr() (string, error) {
	pc, ln, err := listenDNS("127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	ln.Close()
	return addr, nil
}
