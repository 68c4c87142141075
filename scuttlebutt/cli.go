package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// cli is one invocation of a command that talks to an agent.
type cli struct {
	addr    string
	token   string
	cacert  string // PEM file of CAs for an https -addr; empty: the system's
	json    bool
	timeout time.Duration
	stdout  io.Writer
	stderr  io.Writer
	name    string
	ctx     context.Context // of the requests; nil: none
}

// apiError is an answer of the agent other than 2xx.
type apiError struct {
	Code int
	Msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Code) }

func (c *cli) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "http://127.0.0.1:7777", "`URL` of the agent's HTTP API (env SCUTTLEBUTT_ADDR)")
	fs.StringVar(&c.token, "token", "", "`token` for writes (env SCUTTLEBUTT_TOKEN)")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "`time` to wait for the agent")
	fs.StringVar(&c.cacert, "cacert", "", "PEM `file` of the CA (or self-signed certificate) of an https -addr (env SCUTTLEBUTT_CACERT)")
}

// client returns the HTTP client of the command: with -cacert, it trusts
// that file's certificates only.
func (c *cli) client() (*http.Client, error) {
	hc := &http.Client{Timeout: c.timeout}
	if c.cacert == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(c.cacert)
	if err != nil {
		return nil, fmt.Errorf("-cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-cacert %s: no PEM certificate in it", c.cacert)
	}
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return hc, nil
}

func (c *cli) url(path string, q url.Values) string {
	base := c.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u := strings.TrimRight(base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// do sends a request and decodes a JSON answer into out (when not nil). It
// returns the raw body too.
func (c *cli) do(method, path string, q url.Values, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return nil, fmt.Errorf("bad -addr %q: %w", c.addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc, err := c.client()
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent at %s: %w (is `scuttlebutt agent` running? set -addr or SCUTTLEBUTT_ADDR)", c.addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the agent's answer: %w", err)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusNoContent && ct != "application/json" {
		return raw, &notAgentError{addr: c.addr, code: resp.StatusCode, ctype: resp.Header.Get("Content-Type")}
	}
	if resp.StatusCode/100 != 2 {
		var e errorBody
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			return raw, &notAgentError{addr: c.addr, code: resp.StatusCode, ctype: resp.Header.Get("Content-Type")}
		}
		return raw, &apiError{Code: resp.StatusCode, Msg: e.Error}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("decoding the agent's answer: %w", err)
		}
	}
	return raw, nil
}

// fail prints err and returns the exit code it means.
func (c *cli) fail(err error) int {
	fmt.Fprintf(c.stderr, "scuttlebutt %s: %v\n", c.name, err)
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
		return exitNotFound
	}
	return exitError
}

func (c *cli) usageErr(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "scuttlebutt %s: %s\n", c.name, fmt.Sprintf(format, args...))
	return exitUsage
}

func (c *cli) printJSON(raw []byte) int {
	var v any
	if err := json.Unmarshal(raw, &v); err == nil {
		if b, err := json.MarshalIndent(v, "", "  "); err == nil {
			raw = b
		}
	}
	c.stdout.Write(raw)
	fmt.Fprintln(c.stdout)
	return exitOK
}

func (c *cli) table() *tabwriter.Writer { return tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0) }

// cliEnv is the environment of the commands that talk to an agent: only
// the variables of their common flags.
func cliEnv(k string) string {
	switch k {
	case envPrefix + "ADDR", envPrefix + "TOKEN", envPrefix + "CACERT":
		return os.Getenv(k)
	}
	return ""
}

// runCLI runs the commands that talk to an agent.
func runCLI(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, name: name}
	sub := ""
	if name == "kv" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "scuttlebutt kv: want get, set, delete or list\n")
			return exitUsage
		}
		sub, args = args[0], args[1:]
		c.name = "kv " + sub
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	var (
		node, label   string
		healthy, port bool
		clear, list   bool
		force         bool
		targetToken   string
	)
	switch name {
	case "kv":
		fs.StringVar(&node, "node", "", "`ID` of the node whose keys to read (default: the agent's node)")
	case "services":
		fs.BoolVar(&healthy, "healthy", false, "only healthy instances")
	case "hosts":
		fs.StringVar(&label, "label", "", "service `name`")
		fs.BoolVar(&port, "port", false, "print host:port instead of host")
		fs.String("host-ip", "", "ignored: accepted for ServiceMonitor's command lines (the agent asked is -addr)")
	case "decommission":
		fs.BoolVar(&clear, "clear", false, "clear the decommission of ID: let it back in")
		fs.BoolVar(&list, "list", false, "list decommissioned node IDs")
		fs.BoolVar(&force, "force", false, "decommission even this node's last live peer, or more than half of the cluster")
		fs.StringVar(&targetToken, "target-token", "", "the `token` of node ID's API, when it has one other than -token")
	}
	pos, err := parseFlags(fs, args, cliEnv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return c.usageErr("%v", err)
	}
	switch name {
	case "members":
		if len(pos) > 0 {
			return c.usageErr("takes no arguments")
		}
		return c.members()
	case "services":
		if len(pos) > 1 {
			return c.usageErr("takes at most one service name")
		}
		if len(pos) == 1 {
			return c.service(pos[0], healthy)
		}
		return c.services()
	case "hosts":
		if label == "" && len(pos) == 1 {
			label, pos = pos[0], nil
		}
		if label == "" || len(pos) > 0 {
			return c.usageErr("want -label NAME")
		}
		return c.hosts(label, port)
	case "decommission":
		if list {
			return c.decommissions()
		}
		if len(pos) != 1 {
			return c.usageErr("want one node ID (or -list)")
		}
		return c.decommission(pos[0], clear, decommissionRequest{Token: targetToken, Force: force})
	}
	if sub != "" && sub != "list" && len(pos) > 0 {
		if err := checkKeyPath(pos[0]); err != nil {
			return c.usageErr("%v", err)
		}
	}
	switch sub {
	case "get":
		if len(pos) != 1 {
			return c.usageErr("want KEY")
		}
		return c.kvGet(pos[0], node)
	case "set":
		if len(pos) != 2 {
			return c.usageErr("want KEY VALUE (VALUE - reads standard input)")
		}
		v := pos[1]
		if v == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
			if err != nil {
				return c.fail(err)
			}
			v = string(b)
		}
		return c.kvSet(pos[0], v)
	case "delete":
		if len(pos) != 1 {
			return c.usageErr("want KEY")
		}
		return c.kvDelete(pos[0])
	case "list":
		if len(pos) != 0 {
			return c.usageErr("takes no arguments")
		}
		return c.kvList(node)
	}
	return c.usageErr("unknown kv command %q: want get, set, delete or list", sub)
}

func (c *cli) members() int {
	var out struct {
		Self  string     `json:"self"`
		Nodes []nodeJSON `json:"nodes"`
	}
	raw, err := c.do("GET", "/v1/nodes", nil, nil, &out)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := c.table()
	roles := slices.ContainsFunc(out.Nodes, func(n nodeJSON) bool { return n.Role != "" })
	if roles {
		fmt.Fprintln(tw, "ID\tADDRESS\tSTATUS\tROLE\tGENERATION\tLAST HEARD\tKEYS\t")
	} else {
		fmt.Fprintln(tw, "ID\tADDRESS\tSTATUS\tGENERATION\tLAST HEARD\tKEYS\t")
	}
	now := time.Now()
	for _, n := range out.Nodes {
		note := ""
		if n.Local {
			note = "(this node)"
		}
		if n.Decommissioned {
			note += " decommissioned"
		}
		status := printable(n.Status)
		if roles {
			status += "\t" + printable(roleText(n.Role, n.Bootstrap))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", printable(n.ID), printable(n.Addr), status, n.Generation,
			ago(now, n.LastHeard, n.Local), n.Keys, strings.TrimSpace(note))
	}
	tw.Flush()
	return exitOK
}

func (c *cli) services() int {
	var out struct {
		Services []serviceSummary `json:"services"`
	}
	raw, err := c.do("GET", "/v1/services", nil, nil, &out)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := c.table()
	fmt.Fprintln(tw, "SERVICE\tINSTANCES\tHEALTHY")
	for _, s := range out.Services {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", printable(s.Name), s.Instances, s.Healthy)
	}
	tw.Flush()
	return exitOK
}

func (c *cli) instances(name string, healthy bool) ([]instanceView, []byte, error) {
	var out struct {
		Instances []instanceView `json:"instances"`
	}
	q := url.Values{}
	if healthy {
		q.Set("healthy", "true")
	}
	raw, err := c.do("GET", "/v1/services/"+url.PathEscape(name), q, nil, &out)
	return out.Instances, raw, err
}

func (c *cli) service(name string, healthy bool) int {
	list, raw, err := c.instances(name, healthy)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := c.table()
	fmt.Fprintln(tw, "ADDRESS\tHEALTH\tSTATE\tNODE\tCONTAINER\tIMAGE")
	for _, in := range list {
		health := in.Verdict // passing, failing, expired...; older agents send only health
		if health == "" {
			health = in.Health
		}
		if in.Maintenance != "" {
			health += " (" + in.Maintenance + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(in.Addr), printable(health), printable(in.State), printable(in.Node),
			printable(in.Name), printable(in.Image))
	}
	tw.Flush()
	return exitOK
}

func (c *cli) hosts(label string, withPort bool) int {
	list, _, err := c.instances(label, true)
	var ae *apiError
	if err != nil && !(errors.As(err, &ae) && ae.Code == http.StatusNotFound) {
		return c.fail(err)
	}
	var hosts []string
	for _, in := range list {
		h := in.Host
		if withPort {
			h = in.Addr
		}
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if c.json {
		if hosts == nil {
			hosts = []string{}
		}
		b, _ := json.Marshal(hosts)
		fmt.Fprintln(c.stdout, string(b))
	} else if len(hosts) > 0 {
		fmt.Fprintln(c.stdout, strings.Join(hosts, ","))
	}
	if len(hosts) == 0 {
		fmt.Fprintf(c.stderr, "scuttlebutt hosts: no healthy instance of %q\n", label)
		return exitNotFound
	}
	return exitOK
}

func (c *cli) kvGet(key, node string) int {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	var out kvEntry
	raw, err := c.do("GET", "/v1/kv/"+escapeKey(key), q, nil, &out)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	fmt.Fprintln(c.stdout, out.Value)
	return exitOK
}

func (c *cli) kvSet(key, value string) int {
	raw, err := c.do("PUT", "/v1/kv/"+escapeKey(key), nil, map[string]string{"value": value}, nil)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	return exitOK
}

func (c *cli) kvDelete(key string) int {
	if _, err := c.do("DELETE", "/v1/kv/"+escapeKey(key), nil, nil, nil); err != nil {
		return c.fail(err)
	}
	return exitOK
}

func (c *cli) kvList(node string) int {
	if node == "" {
		var h struct {
			ID string `json:"id"`
		}
		if _, err := c.do("GET", "/healthz", nil, nil, &h); err != nil {
			return c.fail(err)
		}
		node = h.ID
	}
	var out struct {
		State map[string]string `json:"state"`
	}
	_, err := c.do("GET", "/v1/nodes/"+url.PathEscape(node), nil, nil, &out)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		b, _ := json.Marshal(out.State)
		return c.printJSON(b)
	}
	tw := c.table()
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, k := range sortedKeys(out.State) {
		fmt.Fprintf(tw, "%s\t%s\n", printable(k), printable(out.State[k]))
	}
	tw.Flush()
	return exitOK
}

func (c *cli) decommission(id string, clear bool, req decommissionRequest) int {
	method := "POST"
	var body any
	switch {
	case clear:
		method = "DELETE"
	case req != decommissionRequest{}:
		body = req
	}
	var out decommissionView
	raw, err := c.do(method, "/v1/nodes/"+url.PathEscape(id)+"/decommission", nil, body, &out)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	if clear {
		fmt.Fprintf(c.stdout, "node %s may join again\n", id)
	} else {
		fmt.Fprintf(c.stdout, "node %s is decommissioned; it leaves when it hears\n", id)
	}
	return exitOK
}

func (c *cli) decommissions() int {
	var out struct {
		Decommissions []decommissionView `json:"decommissions"`
	}
	raw, err := c.do("GET", "/v1/decommissions", nil, nil, &out)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tSTATE\tBY\tAT")
	for _, d := range out.Decommissions {
		state := "out"
		switch {
		case d.Refused:
			state = "refused"
		case d.Cleared:
			state = "cleared"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printable(d.ID), state, printable(d.By), d.At.Format(time.RFC3339))
	}
	tw.Flush()
	return exitOK
}

// escapeKey escapes each segment of a key, keeping its slashes.
func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
