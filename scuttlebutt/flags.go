package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// envPrefix starts the environment variable of every flag: -http is
// SCUTTLEBUTT_HTTP, -log-format is SCUTTLEBUTT_LOG_FORMAT.
const envPrefix = "SCUTTLEBUTT_"

// defaultGossipPort is the port of -bind, and of -join addresses given
// without one.
const defaultGossipPort = "8119"

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set appends the comma-separated values of v.
func (l *listFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then sets every flag not given on the command line
// from its environment variable, if set. It returns the positional
// arguments; flags may come after them.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			rest = append(rest, args[1:]...)
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s=%q: %v", envName(f.Name), v, e)
			}
		}
	})
	return rest, err
}

// agentConfig is the configuration of `scuttlebutt agent`.
type agentConfig struct {
	join       listFlag
	bind       string
	advertise  string
	id         string
	cluster    string
	http       string
	token      string
	preset     string
	docker     bool
	dockerOpts dockerFlags
	logFormat  string
	logLevel   string
	encryption encryptionFlags
	httpOpts   httpFlags
	registry   registryFlags
	leaseOpts  leaseFlags
	data       dataFlags
	dnsOpts    dnsFlags
}

type dockerFlags struct {
	label     string
	explicit  bool
	hostAddr  string
	container bool
}

// defaultAgentConfig returns the configuration of an agent given no flag:
// the default of every agent flag. Whatever starts agents (the agent, the
// demo, and through them bench-http) starts from these defaults, so that a
// flag added later has its default everywhere.
func defaultAgentConfig() agentConfig {
	var c agentConfig
	newAgentFlagSet(&c)
	return c
}

// newAgentFlagSet returns the flags of `scuttlebutt agent`, bound to c.
func newAgentFlagSet(c *agentConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	return fs
}

func (c *agentConfig) register(fs *flag.FlagSet) {
	fs.Var(&c.join, "join", "`host:port` of a node to join through; repeatable or comma-separated (port "+defaultGossipPort+" when absent). Empty: wait for others to join this node")
	fs.StringVar(&c.bind, "bind", "0.0.0.0:"+defaultGossipPort, "UDP and TCP `address` to gossip on; port 0 picks a free port")
	fs.StringVar(&c.advertise, "advertise", "", "`address` peers use to reach this node (default: the bound address, or this host's first non-loopback address)")
	fs.StringVar(&c.id, "id", "", "node `ID`, at most 64 bytes; the same ID after a restart is the same node (default: random)")
	fs.StringVar(&c.cluster, "cluster", "default", "cluster `name`; nodes of other clusters are refused")
	fs.StringVar(&c.http, "http", "127.0.0.1:7777", "`address` of the HTTP API and web page; empty disables it")
	fs.StringVar(&c.token, "token", "", "`token` required for writes (PUT, DELETE, POST); needed for writes when -http is not loopback-only")
	fs.StringVar(&c.preset, "config", "lan", "timing `preset`: lan, wan or local (one host)")
	fs.BoolVar(&c.docker, "docker", false, "publish this host's container services through the Docker adapter (DOCKER_HOST etc. as for the docker CLI)")
	fs.StringVar(&c.dockerOpts.label, "docker-label", "", "with -docker: publish only containers with this `label` (name or name=value)")
	fs.BoolVar(&c.dockerOpts.explicit, "docker-explicit", false, "with -docker: publish only containers with a scuttlebutt.service or scuttlebutt.port.<port>.name label")
	fs.StringVar(&c.dockerOpts.hostAddr, "docker-host-addr", "", "with -docker: `address` advertised for published ports (default: this node's address)")
	fs.BoolVar(&c.dockerOpts.container, "docker-container-addr", false, "with -docker: advertise container addresses and private ports (overlay networks)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	c.encryption.register(fs)
	c.httpOpts.register(fs)
	c.registry.register(fs)
	c.leaseOpts.register(fs)
	c.data.register(fs)
	c.dnsOpts.register(fs)
}

// gossipConfig checks the flags and returns the node's configuration.
func (c *agentConfig) gossipConfig() (*scuttlebutt.Config, error) {
	var cfg *scuttlebutt.Config
	switch strings.ToLower(c.preset) {
	case "lan":
		cfg = scuttlebutt.DefaultLANConfig()
	case "wan":
		cfg = scuttlebutt.DefaultWANConfig()
	case "local":
		cfg = scuttlebutt.DefaultLocalConfig()
	default:
		return nil, fmt.Errorf("-config %q: want lan, wan or local", c.preset)
	}
	if err := checkHostPort("-bind", c.bind, false); err != nil {
		return nil, err
	}
	if c.advertise != "" {
		if err := checkHostPort("-advertise", c.advertise, true); err != nil {
			return nil, err
		}
	}
	if c.http != "" {
		if err := checkHostPort("-http", c.http, false); err != nil {
			return nil, err
		}
	}
	for i, j := range c.join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			j = net.JoinHostPort(strings.Trim(j, "[]"), defaultGossipPort)
			c.join[i] = j
		}
		if err := checkHostPort("-join", j, true); err != nil {
			return nil, err
		}
		if err := checkJoinHost(j); err != nil {
			return nil, err
		}
	}
	if len(c.id) > scuttlebutt.MaxIDSize || strings.ContainsAny(c.id, "/ \t\n") {
		return nil, fmt.Errorf("-id %q: at most %d bytes, without slashes or spaces", c.id, scuttlebutt.MaxIDSize)
	}
	if len(c.cluster) > scuttlebutt.MaxIDSize || c.cluster == "" {
		return nil, fmt.Errorf("-cluster %q: want 1 to %d bytes", c.cluster, scuttlebutt.MaxIDSize)
	}
	if _, err := c.level(); err != nil {
		return nil, err
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return nil, fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	}
	if err := c.httpOpts.check(); err != nil {
		return nil, err
	}
	if err := c.registry.check(); err != nil {
		return nil, err
	}
	if err := c.leaseOpts.check(); err != nil {
		return nil, err
	}
	if err := c.dnsOpts.check(); err != nil {
		return nil, err
	}
	kr, err := c.encryption.keyring()
	if err != nil {
		return nil, err
	}
	cfg.ID = c.id
	cfg.BindAddr = c.bind
	cfg.AdvertiseAddr = c.advertise
	cfg.ClusterID = c.cluster
	cfg.Keyring = kr
	cfg.AcceptPlaintext = c.encryption.acceptPlaintext
	cfg.SendPlaintext = c.encryption.sendPlaintext
	return cfg, nil
}

func (c *agentConfig) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.logLevel)); err != nil {
		return 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.logLevel)
	}
	return l, nil
}

func (c *agentConfig) logger(w io.Writer) *slog.Logger {
	l, _ := c.level()
	return newLogger(w, c.logFormat, l)
}

// libLogger returns the library's log: warnings and errors only, unless
// -log-level is debug, when it is log itself.
func (c *agentConfig) libLogger(w io.Writer, log *slog.Logger) *slog.Logger {
	level, _ := c.level()
	if level <= slog.LevelDebug {
		return log.With("component", "gossip")
	}
	return newLogger(w, c.logFormat, max(level, slog.LevelWarn)).With("component", "gossip")
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// checkHostPort checks a host:port flag; needHost refuses an empty host.
func checkHostPort(name, v string, needHost bool) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%s %q: %v; want host:port, e.g. 10.0.0.7:%s", name, v, addrErr(err), defaultGossipPort)
	}
	if needHost && host == "" {
		return fmt.Errorf("%s %q: the host is missing; want host:port, e.g. 10.0.0.7:%s", name, v, defaultGossipPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s %q: port %q is not a number from 0 to 65535", name, v, port)
	}
	return nil
}

// randomID returns a random node ID of 12 hex digits.
func randomID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func addrErr(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}
