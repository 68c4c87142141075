package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"regexp"

	"bytes"
	"errors"
	"github.com/scuttlebutt-go/scuttlebutt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// Keys the agent interprets are refused by the KV API: a lease request
// dated 1970 (which would hold every queue), roles, registrations and
// decommission markers have their own writers. Nothing is written.
func TestReservedKeys(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	for key, owner := range map[string]string{
		"lease/es/fake-1":    "/v1/leases",
		"lease/":             "/v1/leases",
		"role":               "-servers",
		"bootstrap":          "-servers",
		"svc/web/es-1":       "/v1/registrations",
		"decommission/n2":    "/v1/nodes/{id}/decommission",
		":heartbeat":         "library",
		"svc/web/x/8080/tcp": "", // a Docker adapter record: allowed, validated
	} {
		code, body := ts.do(t, "PUT", "/v1/kv/"+key, "text/plain", "1")
		if owner == "" {
			if code != http.StatusBadRequest || !strings.Contains(body, "service records") {
				t.Errorf("PUT %s with a bad record: %d %s, want the record's 400", key, code, body)
			}
			continue
		}
		if code != http.StatusBadRequest || !strings.Contains(body, owner) {
			t.Errorf("PUT %s: %d %s, want 400 naming %s", key, code, body, owner)
		}
		if code, _ := ts.do(t, "DELETE", "/v1/kv/"+key, "", ""); code != http.StatusBadRequest {
			t.Errorf("DELETE %s: %d, want 400", key, code)
		}
	}
	if st, _ := ts.node.State("n1"); len(st) != 0 {
		t.Fatalf("reserved keys were written: %v", st)
	}
	if q := ts.srv.leases.leases.Requests("es"); len(q) != 0 {
		t.Fatalf("the lease queue of es holds %v", q)
	}
}

// Paths are taken literally: "." and ".." segments and "//" are refused
// with 400, never redirected to another key, whether written as is or
// escaped; nothing is written.
func TestLiteralKeyPaths(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	noRedirect := *ts.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, path := range []string{"a/../b2", "a/./b2", "a//b2", "a%2F..%2Fb2", "a/..", "%2Fb2", "a%2F%2Fb2", "./b2"} {
		for _, method := range []string{"PUT", "GET", "DELETE"} {
			req, _ := http.NewRequest(method, ts.URL+"/v1/kv/"+path, strings.NewReader("v"))
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s /v1/kv/%s: %d (Location %q), want 400", method, path, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	}
	if st, _ := ts.node.State("n1"); len(st) != 0 {
		t.Fatalf("keys written through unclean paths: %v", st)
	}
	if code, body := ts.do(t, "PUT", "/v1/kv/a.b/..c/d.", "text/plain", "v"); code != 200 {
		t.Fatalf("dots inside segments are fine: %d %s", code, body)
	}
}

// runCmd runs a command of the CLI in this process and returns its exit
// code, standard output and standard error.
func runCmd(stdout io.Writer, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	if stdout == nil {
		stdout = &out
	}
	code := run(args, strings.NewReader(""), stdout, &errOut)
	return code, out.String(), errOut.String()
}

// The CLI refuses keys with "." or ".." segments or "//" (exit 2) rather
// than letting them name another key.
func TestCLIRefusesDotSegments(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	for _, args := range [][]string{
		{"kv", "set", "a b/../c", "v"}, {"kv", "set", "a//c", "v"}, {"kv", "get", "./c"}, {"kv", "delete", "a/.."},
	} {
		code, _, stderr := runCmd(nil, append(args, "-addr", ts.URL)...)
		if code != exitUsage || !strings.Contains(stderr, "segment") {
			t.Errorf("%q: exit %d, stderr %q; want 2 naming the segment", args, code, stderr)
		}
	}
	if st, _ := ts.node.State("n1"); len(st) != 0 {
		t.Fatalf("keys written: %v", st)
	}
	if code, _, stderr := runCmd(nil, "kv", "set", "-addr", ts.URL, "a b/c", "v"); code != exitOK {
		t.Fatalf("kv set of a good key: exit %d: %s", code, stderr)
	}
}

// Against a web server that is not an agent (a 404 page in HTML for every
// path), the commands say so and exit 1: not 3, which a script reads as
// "not found" or "no healthy host". The page is not printed.
func TestCLINotAnAgent(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<html><body><h1>404 Not Found</h1></body></html>")
	}))
	defer web.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>it works</html>")
	}))
	defer ok.Close()
	for _, srv := range []*httptest.Server{web, ok} {
		for _, args := range [][]string{
			{"members"}, {"hosts", "-label", "web"}, {"services", "web"}, {"kv", "get", "k"}, {"kv", "list"},
			{"kv", "delete", "k"}, {"decommission", "-list"}, {"release-lease", "-label", "es", "-service-id", "es-1"},
			{"acquire-lease", "-label", "es", "-service-id", "es-1", "-timeout", "30s"},
			{"watch", "-label", "es", "-service-id", "es-1", "-monitor-url", "http://127.0.0.1:1/"},
		} {
			start := time.Now()
			code, stdout, stderr := runCmd(nil, append(args, "-addr", srv.URL)...)
			if code != exitError || !strings.Contains(stderr, "not a scuttlebutt agent") || strings.Contains(stderr, "<html") || stdout != "" {
				t.Errorf("%q against a web server: exit %d, stdout %q, stderr %q; want 1 and \"not a scuttlebutt agent\"", args, code, stdout, stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%q took %v", args, d)
			}
		}
	}
}

// failingWriter fails every write, as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// A command whose output cannot be written exits non-zero: to a failing
// writer, and to /dev/full.
func TestCLIOutputErrors(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	ts.node.set("n1", "k", "v")
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	for _, w := range []io.Writer{failingWriter{}, full} {
		for _, args := range [][]string{{"members"}, {"kv", "list"}, {"kv", "get", "k"}, {"members", "-json"}, {"keygen"}} {
			code, _, stderr := runCmd(w, append(args, "-addr", ts.URL)...)
			if args[0] == "keygen" {
				code, _, stderr = runCmd(w, "keygen")
			}
			if code != exitError || !strings.Contains(stderr, "writing the output") {
				t.Errorf("%q to %T: exit %d, stderr %q; want 1", args, w, code, stderr)
			}
		}
	}
	if code, stdout, _ := runCmd(nil, "kv", "get", "k", "-addr", ts.URL); code != exitOK || stdout != "v\n" {
		t.Fatalf("kv get to a good writer: %d %q", code, stdout)
	}
}

// Keys and values with control characters are printed escaped by the
// tables (kv list, members), never as raw escape sequences; JSON escapes
// them by itself.
func TestCLIEscapesControlChars(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	ts.node.set("n1", "\x1b[2J\x1b[31mred", "bell\a")
	ts.node.set("n1", "plain", "ok")
	for _, args := range [][]string{{"kv", "list"}, {"kv", "list", "-json"}} {
		code, stdout, stderr := runCmd(nil, append(args, "-addr", ts.URL)...)
		if code != exitOK {
			t.Fatalf("%q: %d %s", args, code, stderr)
		}
		if strings.ContainsAny(stdout, "\x1b\a") {
			t.Fatalf("%q printed raw control characters: %q", args, stdout)
		}
		if !strings.Contains(stdout, `\x1b[2J\x1b[31mred`) && !strings.Contains(stdout, `\u001b[2J\u001b[31mred`) {
			t.Fatalf("%q does not show the key escaped: %q", args, stdout)
		}
		if !strings.Contains(stdout, "plain") {
			t.Fatalf("%q lost a plain key: %q", args, stdout)
		}
	}
	// A table's own tabs stay tabs: members with roles, a plain status.
	ts.node.set("n1", roleKey, "server")
	code, stdout, stderr := runCmd(nil, "members", "-addr", ts.URL)
	if code != exitOK || !regexp.MustCompile(`(?m)^n1\s+\S+\s+alive\s+server\s`).MatchString(stdout) {
		t.Fatalf("members with a role: %d %q %s", code, stdout, stderr)
	}
	if got := printable("a b/c"); got != "a b/c" {
		t.Fatalf("printable changed a plain key: %q", got)
	}
}

// Registrations, lease names, KV bodies and flags validate like the rest
// of the API: each bad input gets its 400 (or exit 2), nothing is written.
func TestValidationList(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true})
	cases := []struct {
		name, method, path, body, want string
	}{
		{"TTL of 2562047h (year 2319)", "PUT", "/v1/registrations/es/es-1", `{"host":"10.0.0.9","port":9200,"ttl":"2562047h"}`, "ttl"},
		{"TTL over a day", "PUT", "/v1/registrations/es/es-1", `{"host":"10.0.0.9","port":9200,"ttl":"25h"}`, "ttl"},
		{"garbage after the JSON", "PUT", "/v1/registrations/es/es-1", `{"host":"10.0.0.9","port":9200} garbage`, "after the JSON"},
		{"a brace after the JSON", "PUT", "/v1/registrations/es/es-1", `{"host":"10.0.0.9","port":9200}}`, "after the JSON"},
		{"info a number", "PUT", "/v1/registrations/es/es-1", `{"host":"10.0.0.9","port":9200,"info":3}`, "object"},
		{"info an array", "PUT", "/v1/registrations/es/es-1", `{"host":"10.0.0.9","port":9200,"info":[1]}`, "object"},
		{"info a string", "PUT", "/v1/registrations/es/es-1", `{"host":"10.0.0.9","port":9200,"info":"x"}`, "object"},
		{"KV JSON with a brace after it", "PUT", "/v1/kv/k", `{"value":"a"}}`, "after the JSON"},
		{"lease body with garbage after it", "POST", "/v1/leases/es/es-1", `{"max_hold":"5m"} x`, "after the JSON"},
		{"lease label with a space", "POST", "/v1/leases/e%20s/es-1", ``, "A-Z"},
		{"lease service ID with a colon", "POST", "/v1/leases/es/es:1", ``, "A-Z"},
	}
	for _, c := range cases {
		code, body := ts.do(t, c.method, c.path, "application/json", c.body)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want 400 naming %q", c.name, code, body, c.want)
		}
	}
	if st, _ := ts.node.State("n1"); len(st) != 0 {
		t.Fatalf("written by bad requests: %v", st)
	}
	if code, body := ts.do(t, "PUT", "/v1/registrations/es/es-1", "application/json", `{"host":"10.0.0.9","port":9200,"ttl":"24h","info":{"a":1}}`+"\n"); code != 200 {
		t.Fatalf("a good registration: %d %s", code, body)
	}

	// The command line.
	for _, args := range [][]string{
		{"acquire-lease", "-label", "es", "-service-id", "es-1", "-timeout", "-5s"},
		{"acquire-lease", "-label", "e s", "-service-id", "es-1"},
		{"release-lease", "-label", "es", "-service-id", "a b"},
		{"watch", "-label", "es", "-service-id", "es-1", "-monitor-url", "http://127.0.0.1:1/", "-service-info", "[1]"},
		{"watch", "-label", "es", "-service-id", "es-1", "-monitor-url", "http://127.0.0.1:1/", "-ttl", "2562047h"},
		{"agent", "-join", "::::", "-http", "", "-bind", "127.0.0.1:0"},
		{"agent", "-join", "bad host!:8119", "-http", "", "-bind", "127.0.0.1:0"},
	} {
		if args[0] != "agent" {
			args = append(args, "-addr", ts.URL)
		}
		if code, _, stderr := runCmd(nil, args...); code != exitUsage {
			t.Errorf("%q: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

// HTTP/1.0 without a Host header is answered (browsers always send one:
// it is no DNS rebinding); the refusal of a bad Host never names an empty
// host. The 413 of a full node does not point at the library's Config.
func TestHostlessRequestAndLimitMessages(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true, checkHosts: true})
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/1.0 without Host: %d %s", resp.StatusCode, b)
	}
	for _, err := range []error{&scuttlebutt.LimitError{Limit: "keys_per_node"}, &scuttlebutt.SizeError{What: "value", Size: 900, Limit: 888}} {
		rec := httptest.NewRecorder()
		nodeError(rec, err)
		if rec.Code != http.StatusRequestEntityTooLarge || strings.Contains(rec.Body.String(), "Config") || !strings.Contains(rec.Body.String(), "fixed") {
			t.Errorf("%v: %d %s; want 413 saying the limit is fixed, not naming Config", err, rec.Code, rec.Body.String())
		}
	}
}

// watchHolder is a stream opened by openWatchStream.
type watchHolder struct {
	close func()
	ended chan struct{} // closed when the agent ends the stream
}

// openWatchStream opens /v1/watch from a source address and follows it
// until it ends.
func openWatchStream(t *testing.T, base, from string) (int, *watchHolder) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/watch", nil)
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return resp.StatusCode, nil
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	h := &watchHolder{close: func() { cancel(); resp.Body.Close() }, ended: make(chan struct{})}
	go func() {
		io.Copy(io.Discard, br)
		close(h.ended)
	}()
	return http.StatusOK, h
}

// Twenty source addresses, each opening as many watch streams as it may,
// take every stream of the agent; a legitimate client still gets one,
// from a client holding more than its share, and so does a second.
func TestWatchStreamsFairShare(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true, maxWatch: 40, maxWatchPerClient: 8})
	var held []*watchHolder
	defer func() {
		for _, h := range held {
			h.close()
		}
	}()
	for i := range 20 {
		for range 8 {
			code, h := openWatchStream(t, ts.URL, fmt.Sprintf("127.0.1.%d", i+1))
			if code == http.StatusOK {
				held = append(held, h)
			}
		}
	}
	if n := ts.srv.watches.open(); n != 40 {
		t.Fatalf("%d streams open, want all 40", n)
	}
	// The attackers share them: each new address took some from the
	// first ones.
	for _, from := range []string{"127.0.2.1", "127.0.2.2"} {
		code, h := openWatchStream(t, ts.URL, from)
		if code != http.StatusOK {
			t.Fatalf("a new client %s with every stream taken by 20 addresses: %d, want 200", from, code)
		}
		held = append(held, h)
	}
	// Every stream granted but the 40 open was ended to make room.
	eventually(t, 5*time.Second, "the streams that made room ended", func() bool {
		ended := 0
		for _, h := range held {
			select {
			case <-h.ended:
				ended++
			default:
			}
		}
		return ended == len(held)-40
	})
	ts.srv.watches.mu.Lock()
	for client, ss := range ts.srv.watches.perClient {
		if len(ss) > 3 {
			t.Errorf("client %s holds %d streams of 40 among 22 clients", client, len(ss))
		}
	}
	ts.srv.watches.mu.Unlock()
	if n := ts.srv.watches.open(); n != 40 {
		t.Fatalf("%d streams open, want 40", n)
	}
}

// The total bound of connections: at the bound a newcomer is served, the
// connection idle the longest is closed to make room (and a warning
// logged); when none is idle, a connection of the client holding the most
// is; when every client holds as many as the newcomer plus one or fewer,
// the newcomer is refused.
func TestConnectionsTotalBound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cl := newConnLimitListener(ln, 100, 4, slog.New(slog.NewTextHandler(&logs, nil)))
	block := make(chan struct{})
	srv := &http.Server{ConnState: cl.connState, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/block" {
			<-block
		}
	})}
	go srv.Serve(cl)
	defer srv.Close()
	defer close(block)
	dial := func(from, path string) *bufio.Reader {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second)) // a loaded CI machine under -race
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
			return nil
		}
		return br
	}
	closed := func(br *bufio.Reader) bool {
		_, err := io.Copy(io.Discard, br) // until the agent closes it, or the deadline
		return err == nil || !isTimeout(err)
	}
	allIdle := func(n int) func() bool {
		return func() bool {
			cl.mu.Lock()
			defer cl.mu.Unlock()
			k := 0
			for c := range cl.conns {
				if c.idle {
					k++
				}
			}
			return k == n
		}
	}
	// Four idle keep-alive connections fill the bound; a fifth client is
	// served and the first (idle the longest) is closed.
	var idle []*bufio.Reader
	for i := range 4 {
		idle = append(idle, dial(fmt.Sprintf("127.0.3.%d", i+1), "/"))
		eventually(t, 3*time.Second, "the connection idle", allIdle(i+1))
	}
	if dial("127.0.4.1", "/") == nil {
		t.Fatal("a newcomer at the bound of idle connections was refused")
	}
	eventually(t, 10*time.Second, "the newcomer's connection idle too", allIdle(4))
	if !closed(idle[0]) {
		t.Fatal("the connection idle the longest was kept")
	}
	if !strings.Contains(logs.String(), "-http-max-conns") {
		t.Fatalf("no warning: %s", logs.String())
	}
	// Busy connections: one client holds three (they close the idle ones),
	// the next newcomer closes the last idle one, two more take theirs
	// from the client holding three; with four clients holding one busy
	// connection each, a fifth is refused.
	for i := range 3 {
		if dial("127.0.5.1", "/block") == nil {
			t.Fatalf("busy connection %d refused", i)
		}
		eventually(t, 10*time.Second, "the busy connections seen busy", allIdle(3-i))
	}
	if dial("127.0.5.2", "/block") == nil {
		t.Fatal("a newcomer was refused while a client held three of four busy connections")
	}
	if dial("127.0.5.3", "/block") == nil || dial("127.0.5.4", "/block") == nil {
		t.Fatal("newcomers were refused while a client held more than its share")
	}
	if dial("127.0.5.5", "/block") != nil {
		t.Fatal("a fifth client was served while four held one busy connection each")
	}
	if open, refused := cl.stats(); open != 4 || refused["idle"] < 1 || refused["fair_share"] != 2 || refused["total"] != 1 {
		t.Fatalf("open %d, refused %v", open, refused)
	}
}

// POST /v1/keys takes at most scuttlebutt.MaxKeys keys: each is tried on
// every datagram that is not sealed with the first. Installing a key that
// is there already is still fine.
func TestKeyringBound(t *testing.T) {
	first, _ := base64.StdEncoding.DecodeString(newKey())
	kr, err := scuttlebutt.NewKeyring(first)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, serverOptions{loopbackOnly: true, keys: &keyManager{kr: kr, log: slog.New(slog.DiscardHandler)}})
	install := func(key string) (int, string) {
		return ts.do(t, "POST", "/v1/keys", "application/json", `{"key":"`+key+`"}`)
	}
	var last string
	for i := 1; i < scuttlebutt.MaxKeys; i++ {
		last = newKey()
		if code, body := install(last); code != 200 {
			t.Fatalf("key %d: %d %s", i+1, code, body)
		}
	}
	code, body := install(newKey())
	if code != http.StatusConflict || !strings.Contains(body, "keys remove") {
		t.Fatalf("key %d: %d %s, want 409", scuttlebutt.MaxKeys+1, code, body)
	}
	if n := len(kr.Keys()); n != scuttlebutt.MaxKeys {
		t.Fatalf("%d keys installed", n)
	}
	if code, body := install(last); code != 200 {
		t.Fatalf("installing an installed key again: %d %s", code, body)
	}
}
