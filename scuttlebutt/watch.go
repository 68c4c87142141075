package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// This file holds `scuttlebutt watch`, ServiceMonitor's command: it
// registers a service with the local agent over the HTTP API, checks it
// at every interval and reports each check to the agent (which publishes
// the verdict and refreshes the record's TTL), until SIGTERM or SIGINT;
// then it withdraws the service.

// newAgentCLI returns a cli and a flag set with the flags that reach an
// agent (-addr, -token, -cacert), for the commands whose -timeout means
// something else.
func newAgentCLI(name string, stdout, stderr io.Writer) (*cli, *flag.FlagSet) {
	c := &cli{stdout: stdout, stderr: stderr, name: name, timeout: 10 * time.Second}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "http://127.0.0.1:7777", "`URL` of the agent's HTTP API (env SCUTTLEBUTT_ADDR)")
	fs.StringVar(&c.token, "token", "", "`token` for writes (env SCUTTLEBUTT_TOKEN)")
	fs.StringVar(&c.cacert, "cacert", "", "PEM `file` of the CA (or self-signed certificate) of an https -addr (env SCUTTLEBUTT_CACERT)")
	return c, fs
}

// watchConfig is the command line of `scuttlebutt watch`.
type watchConfig struct {
	label, serviceID string
	monitorURL, tcp  string
	command          string
	serviceInfo      string
	hostIP           string
	port             int
	interval         time.Duration
	timeout          time.Duration
	rise, fall       int
	ttl              time.Duration
	logLevel         string
	maintenance      string
}

func (w *watchConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&w.label, "label", "", "service `name` (what `hosts --label` asks for)")
	fs.StringVar(&w.serviceID, "service-id", "", "`ID` of this instance, unique within the service")
	fs.StringVar(&w.monitorURL, "monitor-url", "", "`URL` to GET at every check: any 2xx passes")
	fs.StringVar(&w.tcp, "tcp", "", "`host:port` to connect to at every check, instead of -monitor-url")
	fs.StringVar(&w.command, "command", "", "shell `command` (/bin/sh -c) whose exit status 0 passes, instead of -monitor-url")
	fs.StringVar(&w.serviceInfo, "service-info", "", "`JSON` published with the service, as is")
	fs.StringVar(&w.hostIP, "host-ip", "", "`address` to publish (default: the host of -monitor-url or -tcp; the agent's when that is loopback)")
	w.port = -1
	fs.Func("port", "`port` to publish (default: the port of -monitor-url or -tcp, else 0)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 65535 {
			return errors.New("want a port number from 0 to 65535")
		}
		w.port = n
		return nil
	})
	fs.DurationVar(&w.interval, "interval", 5*time.Second, "`time` between checks")
	fs.DurationVar(&w.timeout, "timeout", 0, "`time` a check may take (default: the interval, at most 10s)")
	fs.IntVar(&w.rise, "rise", docker.DefaultRise, "`n` successful checks in a row make the service passing")
	fs.IntVar(&w.fall, "fall", docker.DefaultFall, "`n` failed checks in a row make the service failing")
	fs.DurationVar(&w.ttl, "ttl", 0, "`time` the published verdict stays valid without a report (default: 30s, or 3 intervals if longer)")
	fs.StringVar(&w.maintenance, "maintenance", "", "register the instance in maintenance with this `reason`: visible, never healthy (kept across agent restarts)")
	fs.StringVar(&w.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
}

// check validates the command line and returns the checker and its
// configuration.
func (w *watchConfig) check() (health.Checker, health.Config, error) {
	var cfg health.Config
	if w.label == "" || w.serviceID == "" {
		return nil, cfg, errors.New("want -label NAME and -service-id ID")
	}
	probe := docker.Registration{Service: w.label, ID: w.serviceID, Host: "h"}
	if err := probe.Validate(); err != nil {
		return nil, cfg, fmt.Errorf("-label %q, -service-id %q: %w", w.label, w.serviceID, errors.Unwrap(err))
	}
	n := 0
	var chk health.Checker
	if w.monitorURL != "" {
		n++
		u, err := url.Parse(w.monitorURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, cfg, fmt.Errorf("-monitor-url %q: want an http:// or https:// URL, such as http://10.0.0.7:9200/", w.monitorURL)
		}
		chk = health.HTTP{URL: w.monitorURL}
	}
	if w.tcp != "" {
		n++
		if err := checkHostPort("-tcp", w.tcp, true); err != nil {
			return nil, cfg, err
		}
		chk = health.TCP{Addr: w.tcp}
	}
	if w.command != "" {
		n++
		chk = health.Command{Path: "/bin/sh", Args: []string{"-c", w.command}}
	}
	if n != 1 {
		return nil, cfg, errors.New("want one check: -monitor-url URL, -tcp host:port or -command CMD")
	}
	if w.serviceInfo != "" {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(w.serviceInfo), &obj) != nil || obj == nil {
			return nil, cfg, fmt.Errorf("-service-info %q: not a JSON object; want e.g. '{\"http_port\": 9200}'", w.serviceInfo)
		}
	}
	if w.rise < 1 || w.fall < 1 {
		return nil, cfg, fmt.Errorf("-rise %d, -fall %d: want 1 or more", w.rise, w.fall)
	}
	cfg = health.Config{Interval: w.interval, Timeout: w.timeout, Thresholds: health.Thresholds{Rise: w.rise, Fall: w.fall}}
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, cfg, fmt.Errorf("-interval %v, -timeout %v: %v", w.interval, w.timeout, errors.Unwrap(err))
	}
	if w.ttl == 0 {
		w.ttl = max(docker.DefaultTTL, 3*cfg.Interval)
	}
	if w.ttl < max(docker.MinTTL, 2*cfg.Interval) || w.ttl > maxRegistrationTTL {
		return nil, cfg, fmt.Errorf("-ttl %v: want at least %v and twice the interval, at most %v", w.ttl, docker.MinTTL, maxRegistrationTTL)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(w.logLevel)); err != nil {
		return nil, cfg, fmt.Errorf("-log-level %q: want debug, info, warn or error", w.logLevel)
	}
	return chk, cfg, nil
}

// address returns the host and port to publish: the flags', else those of
// the check's target; a loopback or unspecified host is replaced by the
// host of agentAddr (the agent's gossip address), if it has one.
func (w *watchConfig) address(agentAddr string) (string, int) {
	host, port := "", 0
	switch {
	case w.monitorURL != "":
		u, _ := url.Parse(w.monitorURL)
		host = u.Hostname()
		if p, err := strconv.Atoi(u.Port()); err == nil {
			port = p
		} else if u.Scheme == "https" {
			port = 443
		} else {
			port = 80
		}
	case w.tcp != "":
		h, p, _ := net.SplitHostPort(w.tcp)
		host = h
		port, _ = strconv.Atoi(p)
	}
	if w.port >= 0 {
		port = w.port
	}
	if w.hostIP != "" {
		return w.hostIP, port
	}
	ip := net.ParseIP(host)
	if host == "" || host == "localhost" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		if h, _, err := net.SplitHostPort(agentAddr); err == nil && h != "" {
			if aip := net.ParseIP(h); aip == nil || !aip.IsUnspecified() {
				return h, port
			}
		}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return host, port
}

func watchUsage(fs *flag.FlagSet) func() {
	return func() {
		fmt.Fprintf(fs.Output(), `Usage: scuttlebutt watch -label NAME -service-id ID -monitor-url URL [flags]

Registers a service with the local agent and checks it until SIGTERM or
SIGINT, then withdraws it. Every node of the cluster sees the verdict:
'scuttlebutt hosts -label NAME' lists the instances that pass. As
ServiceMonitor's watch.

Flags:
`)
		fs.PrintDefaults()
	}
}

// runWatch is `scuttlebutt watch`.
func runWatch(args []string, stdout, stderr io.Writer) int {
	c, fs := newAgentCLI("watch", stdout, stderr)
	var w watchConfig
	w.register(fs)
	fs.Usage = watchUsage(fs)
	rest, err := parseFlags(fs, args, cliEnv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return c.usageErr("%v", err)
	}
	if len(rest) > 0 {
		return c.usageErr("unexpected argument %q; see scuttlebutt watch -h", rest[0])
	}
	chk, cfg, err := w.check()
	if err != nil {
		return c.usageErr("%v", err)
	}
	var level slog.Level
	level.UnmarshalText([]byte(w.logLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("service", w.label, "id", w.serviceID)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.ctx = ctx
	return (&watchRun{c: c, w: w, log: log}).run(ctx, chk, cfg)
}

// watchRun is one run of `scuttlebutt watch`.
type watchRun struct {
	c   *cli
	w   watchConfig
	log *slog.Logger

	body        registrationRequest
	path        string
	unreachable bool // the last report did not reach the agent
}

func (wt *watchRun) run(ctx context.Context, chk health.Checker, cfg health.Config) int {
	w := wt.w
	var hz struct {
		Addr string `json:"addr"`
	}
	wt.c.do("GET", "/healthz", nil, nil, &hz) // an unreachable agent is reported by the first PUT
	host, port := w.address(hz.Addr)
	wt.body = registrationRequest{Host: host, Port: port, TTL: w.ttl.String(), Maintenance: w.maintenance}
	if w.serviceInfo != "" {
		wt.body.Info = json.RawMessage(w.serviceInfo)
	}
	wt.path = "/v1/registrations/" + url.PathEscape(w.label) + "/" + url.PathEscape(w.serviceID)

	// Registered at once, so that a refusal (token, bad info) ends the
	// command now rather than at the first check.
	if err := wt.report(nil); err != nil {
		var ae *apiError
		var na *notAgentError
		if errors.As(err, &ae) && ae.Code/100 == 4 || errors.As(err, &na) {
			return wt.c.fail(err)
		}
	}
	wt.log.Info("watching", "addr", net.JoinHostPort(host, strconv.Itoa(port)), "check", describeChecker(chk),
		"interval", cfg.Interval, "timeout", cfg.Timeout, "rise", cfg.Rise, "fall", cfg.Fall, "ttl", w.ttl, "agent", wt.c.addr)
	health.Run(ctx, chk, cfg, func(res health.Result) {
		rc := &reportedCheck{Status: string(res.Status), Checked: res.LastCheck.UTC(), Output: res.Output,
			Latency: res.Latency.Seconds(), Result: "fail"}
		switch {
		case res.OK:
			rc.Result = "pass"
		case res.TimedOut:
			rc.Result = "timeout"
		}
		if res.Changed {
			wt.log.Info("verdict changed", "status", string(res.Status), "output", res.Output)
		} else {
			wt.log.Debug("checked", "status", string(res.Status), "result", rc.Result, "latency", res.Latency, "output", res.Output)
		}
		wt.report(rc)
	})

	// Stopped: withdraw, with a context of its own (ctx has ended).
	wt.c.ctx = context.Background()
	wt.c.timeout = 5 * time.Second
	_, err := wt.c.do("DELETE", wt.path, nil, nil, nil)
	var ae *apiError
	switch {
	case err == nil:
		wt.log.Info("stopped: service withdrawn")
	case errors.As(err, &ae) && ae.Code == http.StatusNotFound:
		wt.log.Info("stopped: the agent had no registration left")
	default:
		wt.log.Warn("stopped, but withdrawing the service failed: it stays until its TTL runs out", "err", err, "ttl", w.ttl)
		return exitError
	}
	return exitOK
}

// report sends the registration with a check's result (nil: none yet) to
// the agent, logging changes of reachability once.
func (wt *watchRun) report(rc *reportedCheck) error {
	wt.body.Check = rc
	_, err := wt.c.do("PUT", wt.path, nil, wt.body, nil)
	if err != nil && wt.c.ctx.Err() != nil {
		return err // stopping
	}
	switch {
	case err != nil && !wt.unreachable:
		wt.unreachable = true
		wt.log.Warn("cannot report to the agent; retrying at every check (the published verdict expires after the TTL)", "err", err)
	case err == nil && wt.unreachable:
		wt.unreachable = false
		wt.log.Info("reporting to the agent again")
	}
	return err
}

func describeChecker(chk health.Checker) string {
	switch c := chk.(type) {
	case health.HTTP:
		return "GET " + c.URL
	case health.TCP:
		return "connect " + c.Addr
	case health.Command:
		return strings.Join(append([]string{c.Path}, c.Args...), " ")
	}
	return fmt.Sprintf("%T", chk)
}
