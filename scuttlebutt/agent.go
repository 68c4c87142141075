package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// Timeouts of an agent's shutdown.
const (
	leaveTimeout   = 5 * time.Second // for Leave to tell peers
	dockerTimeout  = 5 * time.Second // for the adapter to withdraw records
	httpTimeout    = 2 * time.Second // for HTTP requests in flight
	confirmTimeout = 3 * time.Second // for a peer to hold our decommission marker
	aloneWarning   = 15 * time.Second
)

// agent is one node with its subscribers, HTTP server and Docker adapter.
type agent struct {
	node  *scuttlebutt.Node
	pub   *localPublisher // the node, for writers of its own keys
	hub   *hub
	decom *decommissions
	srv   *server
	log   *slog.Logger
	reg   *registrar // -registry, -exec; nil without them
	dns   *dnsServer // -dns; nil without it

	httpSrv    *http.Server
	httpLn     net.Listener
	conns      *connLimitListener // the bounds of httpLn's connections
	httpErr    chan error
	stopWatch  context.CancelFunc // ends /v1/watch streams
	stopDocker context.CancelFunc
	dockerDone chan struct{}
	alone      *time.Timer
}

type agentOptions struct {
	cfg        *scuttlebutt.Config // ID must be set
	httpAddr   string              // empty: no HTTP server
	token      string
	docker     bool
	dockerOpts dockerFlags
	log        *slog.Logger // the operator's log
	libLog     *slog.Logger // the library's log; nil: none
	keyring    string       // -keyring-file: where key changes are saved
	httpOpts   httpFlags    // checked by its flags (defaultAgentConfig): no zero values here
	rolesOwned bool         // -servers: the role keys belong to the role choice
	leaseOpts  leaseFlags
	data       dataFlags // -data-dir
	dnsOpts    dnsFlags  // zero: no DNS server
}

// startAgent creates the node and starts serving HTTP. It does not join.
func startAgent(opt agentOptions) (*agent, error) {
	cfg := *opt.cfg
	log := opt.log
	h := newHub()
	if cfg.Clock != nil {
		h.now = cfg.Clock.Now
	}
	d := newDecommissions(cfg.ID, log)
	d.token = opt.token
	markersFile, err := opt.data.file("decommissions.json")
	if err != nil {
		return nil, err
	}
	var saved map[string]marker
	if markersFile != "" {
		d.store = &decommissionStore{path: markersFile}
		if saved, err = d.store.load(); err != nil {
			return nil, fmt.Errorf("-data-dir: %w", err)
		}
	}
	sub := &subscriber{hub: h, decom: d, log: log}
	cfg.NodeSubscriber = sub
	cfg.StateSubscriber = sub
	cfg.Logger = opt.libLog

	node, err := scuttlebutt.Create(&cfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("cannot gossip on %s: the address is in use (another agent?); choose another -bind port: %w", cfg.BindAddr, err)
		}
		return nil, fmt.Errorf("starting the node: %w", err)
	}
	a := &agent{node: node, hub: h, decom: d, log: log, httpErr: make(chan error, 1)}
	a.pub = &localPublisher{clusterNode: node, hub: h, sub: sub}
	d.setNode(a.pub)
	if opt.token != "" {
		// Decommissions of this node then need its token's authority.
		if err := a.pub.UpdateLocal(authKey, "token"); err != nil {
			node.Close()
			return nil, fmt.Errorf("starting the node: %w", err)
		}
	}
	maintFile, err := opt.data.file("maintenance.json")
	if err != nil {
		node.Close()
		return nil, err
	}
	var maint *maintStore
	if maintFile != "" {
		maint = &maintStore{path: maintFile}
		keys, err := maint.load()
		if err == nil {
			err = restoreMaint(a.pub, keys)
		}
		if err != nil {
			node.Close()
			return nil, fmt.Errorf("-data-dir: %w", err)
		}
		if len(keys) > 0 {
			log.Info("maintenance restored from -data-dir", "keys", len(keys), "file", maintFile)
		}
	}
	if len(saved) > 0 {
		d.restore(saved)
		log.Info("decommission markers restored from -data-dir", "markers", len(saved), "file", markersFile)
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	a.stopWatch = stopWatch
	maxPacket := cfg.MaxPacketSize
	if maxPacket == 0 {
		maxPacket = scuttlebutt.DefaultLANConfig().MaxPacketSize
	}
	so := serverOptions{
		token: opt.token, maxValue: scuttlebutt.MaxValueSize(maxPacket),
		dockerOwned: opt.docker, rolesOwned: opt.rolesOwned, log: log, ctx: watchCtx,
		checkHosts: true, allowHosts: allowedHosts(opt.httpAddr, opt.httpOpts.allowHosts),
		maxWatch: opt.httpOpts.maxWatch, maxWatchPerClient: opt.httpOpts.maxWatchPerClient,
		leaseOpts: opt.leaseOpts.options(cfg.GossipInterval), cluster: cfg.ClusterID, maint: maint,
	}
	if cfg.Keyring != nil {
		so.keys = &keyManager{kr: cfg.Keyring, file: opt.keyring, log: log}
	}
	var tlsConfig *tls.Config
	if opt.httpOpts.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(opt.httpOpts.tlsCert, opt.httpOpts.tlsKey)
		if err != nil {
			node.Close()
			return nil, fmt.Errorf("-http-tls-cert %s, -http-tls-key %s: %w", opt.httpOpts.tlsCert, opt.httpOpts.tlsKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if opt.httpAddr != "" {
		ln, err := net.Listen("tcp", opt.httpAddr)
		if err != nil {
			node.Close()
			return nil, fmt.Errorf("cannot serve HTTP on %s: %w; choose another -http address (or -http '' to disable it)", opt.httpAddr, err)
		}
		so.loopbackOnly = isLoopbackListen(ln.Addr().String()) || isLoopbackListen(opt.httpAddr)
		a.conns = newConnLimitListener(ln, opt.httpOpts.maxConnsPerClient, boundConns(opt.httpOpts.maxConns, log), log)
		a.httpLn = a.conns
		so.conns = a.conns
	}
	a.srv = newServer(a.pub, h, d, so)
	if a.httpLn != nil {
		a.httpSrv = &http.Server{
			TLSConfig:         tlsConfig,
			Handler:           a.srv,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       opt.httpOpts.idleTimeout,
			ConnState:         a.conns.connState,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		go func() {
			serve := a.httpSrv.Serve
			if tlsConfig != nil {
				serve = func(ln net.Listener) error { return a.httpSrv.ServeTLS(ln, "", "") }
			}
			if err := serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.httpErr <- err
			}
		}()
		if !so.loopbackOnly && opt.token == "" {
			log.Warn("the HTTP API listens beyond loopback without a token: writes are refused until -token or SCUTTLEBUTT_TOKEN is set",
				"http", a.httpLn.Addr().String())
		}
	}

	if err := a.startDNS(opt.dnsOpts); err != nil {
		a.shutdown(false)
		return nil, err
	}
	if opt.docker {
		if err := a.startDocker(opt.dockerOpts, maxPacket); err != nil {
			a.shutdown(false)
			return nil, err
		}
	}
	return a, nil
}

func (a *agent) startDocker(f dockerFlags, maxPacket int) error {
	cli, err := docker.NewClient()
	if err != nil {
		return fmt.Errorf("-docker: connecting to the Docker daemon: %w (is DOCKER_HOST right?)", err)
	}
	ad, err := docker.New(a.pub, cli, docker.Options{
		HostAddr: f.hostAddr, UseContainerAddr: f.container, Explicit: f.explicit,
		RequireLabel: f.label, MaxValueSize: scuttlebutt.MaxValueSize(maxPacket),
		Logger: a.log, OnCheck: func(_ string, res health.Result) { a.srv.checks.observeResult("docker", res) },
	})
	if err != nil {
		return fmt.Errorf("-docker: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stopDocker = cancel
	a.dockerDone = make(chan struct{})
	go func() {
		defer close(a.dockerDone)
		if err := ad.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("the Docker adapter stopped", "err", err)
		}
	}()
	a.log.Info("publishing this host's container services", "daemon", cli.DaemonHost())
	return nil
}

// allowedHosts returns the host names the HTTP API answers to besides IP
// literals and localhost: this host's name, the host of -http if it is a
// name, and -http-allow-host.
func allowedHosts(httpAddr string, extra []string) []string {
	names := slices.Clone(extra)
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	if h, _, err := net.SplitHostPort(httpAddr); err == nil && h != "" && net.ParseIP(h) == nil {
		names = append(names, h)
	}
	return names
}

// httpAddr returns the address the HTTP API listens on, or "".
func (a *agent) httpAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// join seeds the node with addrs, leaving out its own address. It does not
// block; problems are logged with what to do about them.
func (a *agent) join(addrs []string) {
	self := a.node.Addr()
	var seeds []string
	for _, s := range addrs {
		if s != self && !slices.Contains(seeds, s) {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		a.log.Info("waiting for other nodes to join this one", "id", a.node.ID(), "addr", self)
		return
	}
	for _, s := range seeds {
		host, _, _ := net.SplitHostPort(s)
		if net.ParseIP(host) == nil {
			if _, err := net.LookupHost(host); err != nil {
				a.log.Warn("cannot resolve a -join host; check the name", "join", s, "err", err)
			}
		}
	}
	go func() {
		if err := a.node.Seed(seeds); err != nil {
			if errors.Is(err, scuttlebutt.ErrClosed) {
				return
			}
			a.log.Warn("could not reach the -join nodes yet; retrying in the background. Check that an agent runs at each address, "+
				"that its -bind port (UDP and TCP) is open, and that -cluster matches", "join", seeds, "err", err)
		}
	}()
	a.alone = time.AfterFunc(aloneWarning, func() {
		for _, ni := range a.node.Nodes() {
			if !ni.Local && ni.Status == scuttlebutt.StatusAlive {
				return
			}
		}
		a.log.Warn("still no live peer; check the -join addresses, firewalls (UDP and TCP), -advertise and -cluster",
			"join", seeds, "after", aloneWarning)
	})
}

// shutdown stops the agent: the Docker adapter withdraws its records, the
// node leaves (or closes silently), then HTTP stops.
func (a *agent) shutdown(leave bool) error {
	if a.alone != nil {
		a.alone.Stop()
	}
	if a.reg != nil {
		a.reg.stop() // -exec stops, the slot and heartbeat go
	}
	if a.stopDocker != nil {
		a.stopDocker()
		select {
		case <-a.dockerDone:
		case <-time.After(dockerTimeout):
			a.log.Warn("the Docker adapter did not withdraw its records in time")
		}
	}
	var err error
	if leave {
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		err = a.node.Leave(ctx)
		cancel()
	} else {
		err = a.node.Close()
	}
	a.stopWatch()
	a.stopDNS()
	if a.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
		a.httpSrv.Shutdown(ctx)
		cancel()
	}
	return err
}

// waitDecommission returns when this node was decommissioned (and the
// decommission was not cleared) or ctx ends.
func (a *agent) waitDecommission(ctx context.Context) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-a.decom.fired():
		}
		cctx, cancel := context.WithTimeout(ctx, confirmTimeout)
		out := a.decom.confirm(cctx, a.pub)
		cancel()
		if out {
			return true
		}
		a.decom.rearm()
	}
}

// launch starts an agent as its flags in c say: the node of cfg (built by
// c.gossipConfig, perhaps changed since), its HTTP server and Docker
// adapter, then the join and the registry. `scuttlebutt agent` and every
// node of the demo start this way.
func (c *agentConfig) launch(cfg *scuttlebutt.Config, log, libLog *slog.Logger, stderr io.Writer) (*agent, error) {
	a, err := startAgent(agentOptions{
		cfg: cfg, httpAddr: c.http, token: c.token, docker: c.docker, dockerOpts: c.dockerOpts,
		log: log, libLog: libLog, keyring: c.encryption.file, httpOpts: c.httpOpts, leaseOpts: c.leaseOpts,
		rolesOwned: c.registry.servers > 0, data: c.data, dnsOpts: c.dnsOpts,
	})
	if err != nil {
		return nil, err
	}
	log.Info("agent started", "id", a.node.ID(), "addr", a.node.Addr(), "cluster", cfg.ClusterID,
		"http", a.httpAddr(), "tls", c.httpOpts.tlsCert != "", "config", c.preset, "encrypted", cfg.Keyring != nil)
	switch {
	case cfg.Keyring == nil && !isLoopbackListen(a.node.Addr()):
		log.Warn("gossip is not encrypted: whoever reaches UDP/TCP " + a.node.Addr() + " can read and forge the cluster's state; " +
			"give every agent the same -encrypt KEY (scuttlebutt keygen makes one)")
	case cfg.SendPlaintext:
		log.Warn("sending gossip unencrypted (-encrypt-send-plaintext): a step of moving the cluster to encryption; drop it once every node has the key")
	case cfg.AcceptPlaintext:
		log.Warn("accepting unencrypted gossip (-encrypt-accept-plaintext): a step of moving the cluster to encryption; drop it once no node sends plaintext")
	}
	if len(c.join) > 0 || c.registry.reg == nil {
		a.join(c.join)
	}
	a.reg = startRegistrar(a, c.registry, log, stderr)
	return a, nil
}

func agentUsage(fs *flag.FlagSet) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, `Usage: scuttlebutt agent [flags]

Runs one node of a cluster with its HTTP API and web page. Every flag can
also be set with an environment variable: -http is SCUTTLEBUTT_HTTP,
-log-format is SCUTTLEBUTT_LOG_FORMAT; a flag given on the command line wins.

Flags:
`)
		fs.PrintDefaults()
	}
}

// runAgent is `scuttlebutt agent`.
func runAgent(args []string, stderr io.Writer) int {
	var c agentConfig
	fs := newAgentFlagSet(&c)
	fs.SetOutput(stderr)
	fs.Usage = agentUsage(fs)
	rest, err := parseFlags(fs, args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "scuttlebutt agent: %v\n", err)
		return exitUsage
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "scuttlebutt agent: unexpected argument %q; see scuttlebutt agent -h\n", rest[0])
		return exitUsage
	}
	cfg, err := c.gossipConfig()
	if err != nil {
		fmt.Fprintf(stderr, "scuttlebutt agent: %v\n", err)
		return exitUsage
	}
	if cfg.ID == "" {
		cfg.ID = randomID()
	}
	if cfg.Clock, err = testClock(os.Getenv, time.Now()); err != nil {
		fmt.Fprintf(stderr, "scuttlebutt agent: %v\n", err)
		return exitUsage
	}
	log := c.logger(stderr)
	libLog := c.libLogger(stderr, log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := c.launch(cfg, log, libLog, stderr)
	if err != nil {
		log.Error(err.Error())
		return exitError
	}

	decommissioned := make(chan struct{})
	go func() {
		if a.waitDecommission(ctx) {
			close(decommissioned)
		}
	}()

	select {
	case <-ctx.Done():
		stop() // a second signal kills at once
		log.Info("signal received: leaving the cluster")
	case <-decommissioned:
		m, _ := a.decom.get(a.node.ID())
		log.Warn("this node was decommissioned: leaving the cluster and exiting. "+
			"It stays out until an operator runs `scuttlebutt decommission -clear "+a.node.ID()+"` against any agent",
			"by", m.By, "at", time.Unix(0, m.At).UTC())
	case err := <-a.httpErr:
		log.Error("the HTTP server failed", "err", err)
		a.shutdown(true)
		return exitError
	}
	if err := a.shutdown(true); err != nil {
		log.Warn("leaving the cluster", "err", err)
	}
	log.Info("left the cluster; bye")
	return exitOK
}
