package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// A page on a domain that resolves to 127.0.0.1 sends its own name as
// Host: refused, with the flag that allows a name. IP literals, localhost
// and allowed names pass.
func TestHostHeaderGuard(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true, checkHosts: true, allowHosts: []string{"agent.internal"}})
	for host, want := range map[string]int{
		"attacker.example":      http.StatusForbidden,
		"attacker.example:7777": http.StatusForbidden,
		"127.0.0.1:7777":        http.StatusOK,
		"[::1]:7777":            http.StatusOK,
		"10.1.2.3":              http.StatusOK,
		"localhost:7777":        http.StatusOK,
		"web.localhost":         http.StatusOK,
		"Agent.Internal:7777":   http.StatusOK,
	} {
		for _, method := range []string{"GET /v1/nodes", "PUT /v1/kv/k"} {
			m, path, _ := strings.Cut(method, " ")
			req, _ := http.NewRequest(m, ts.URL+path, strings.NewReader("v"))
			req.Host = host
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s with Host %s: %d, want %d: %s", method, host, resp.StatusCode, want, body.String())
			}
			if want == http.StatusForbidden && !strings.Contains(body.String(), "-http-allow-host") {
				t.Errorf("refusal does not name the flag: %s", body.String())
			}
		}
	}
	if _, ok := ts.node.Lookup("n1", "k"); !ok {
		t.Fatal("an allowed write did not happen")
	}
}

// openWatch opens /v1/watch from a source address and returns the status
// and, for 200, a function that closes the stream.
func openWatch(t *testing.T, url string, from string) (int, func()) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/watch", nil)
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
	// The stream is registered once its hello arrives.
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return http.StatusOK, func() { cancel(); resp.Body.Close() }
}

// Many /v1/watch streams: past the per-client bound a client is refused
// with 429, past the total bound every client at its share is, and the agent still answers
// other requests. Closed streams give their slots back.
func TestWatchStreamBounds(t *testing.T) {
	ts := newTestServer(t, serverOptions{loopbackOnly: true, maxWatch: 6, maxWatchPerClient: 3})
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for i := range 3 {
		code, c := openWatch(t, ts.URL, "127.0.0.1")
		if code != http.StatusOK {
			t.Fatalf("stream %d of a client: %d", i+1, code)
		}
		closers = append(closers, c)
	}
	if code, _ := openWatch(t, ts.URL, "127.0.0.1"); code != http.StatusTooManyRequests {
		t.Fatalf("a client's 4th stream: %d, want 429", code)
	}
	for i := range 3 {
		code, c := openWatch(t, ts.URL, "127.0.0.2")
		if code != http.StatusOK {
			t.Fatalf("stream %d of a second client: %d", i+1, code)
		}
		closers = append(closers, c)
	}
	// Every stream is taken, each client at its share: no one gets more.
	if code, _ := openWatch(t, ts.URL, "127.0.0.2"); code != http.StatusTooManyRequests {
		t.Fatalf("a 7th stream in all: %d, want 429", code)
	}
	if code, _ := ts.do(t, "GET", "/v1/nodes", "", ""); code != http.StatusOK {
		t.Fatalf("with every stream taken, /v1/nodes: %d", code)
	}
	closers[0]()
	closers = closers[1:]
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.watches.open() != 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the count, not synchronisation
	}
	code, c := openWatch(t, ts.URL, "127.0.0.1")
	if code != http.StatusOK {
		t.Fatalf("after a stream closed: %d", code)
	}
	closers = append(closers, c)
}

// One client address cannot hold more than its share of connections; the
// others' connections are still served.
func TestConnectionsPerClientBound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(newConnLimitListener(ln, 4, 0, nil))
	defer srv.Close()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	dial := func(from string) net.Conn {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for range 4 {
		held = append(held, dial("127.0.0.1"))
	}
	// The fifth is accepted by the kernel, then closed by the agent.
	extra := dial("127.0.0.1")
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a 5th connection from one client was kept open: %v", err)
	}
	other := dial("127.0.0.2")
	defer other.Close()
	other.Write([]byte("GET / HTTP/1.0\r\nHost: x\r\n\r\n"))
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := bufio.NewReader(other).ReadString('\n')
	if !strings.Contains(b, "200") {
		t.Fatalf("another client was not served: %q", b)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// runCLIProc runs the built binary with args against base.
func runCLIProc(bin, base string, args ...string) (int, string, string) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SCUTTLEBUTT_ADDR="+base)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// Agents with the same -encrypt key form a cluster; one with another key
// stays out. The key is rotated with `scuttlebutt keys` on both, the
// keyring file follows, and the cluster stays whole.
func TestEncryptedAgentsAndRotation(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	_, kOut, _ := runCLIProc(bin, "", "keygen")
	oldKey := strings.TrimSpace(kOut)
	if k, err := base64.StdEncoding.DecodeString(oldKey); err != nil || len(k) != 32 {
		t.Fatalf("keygen printed %q", kOut)
	}
	file := filepath.Join(dir, "keyring.json")
	a1 := startAgentProc(t, bin, "enc-1", "-encrypt", oldKey, "-keyring-file", file)
	a2 := startAgentProc(t, bin, "enc-2", "-encrypt", oldKey, "-join", a1.addr)
	_, otherKey, _ := runCLIProc(bin, "", "keygen")
	out := startAgentProc(t, bin, "enc-out", "-encrypt", strings.TrimSpace(otherKey), "-join", a1.addr)
	eventually(t, 15*time.Second, "two encrypted agents alive", func() bool { return a1.statusOf("enc-2") == "alive" })
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v, %v", st, err)
	}
	eventually(t, 10*time.Second, "the outsider's gossip refused and counted", func() bool {
		_, body, _ := a1.request("GET", "/metrics", "")
		return strings.Contains(body, `scuttlebutt_packets_dropped_total{reason="auth_failed"}`)
	})
	if _, ok := a1.nodes()["enc-out"]; ok {
		t.Fatal("an agent of another key joined")
	}
	if _, ok := out.nodes()["enc-1"]; ok {
		t.Fatal("the outsider learnt of the cluster")
	}

	_, nOut, _ := runCLIProc(bin, "", "keygen")
	newKey := strings.TrimSpace(nOut)
	for _, step := range [][]string{{"install", newKey}, {"use", newKey}, {"remove", oldKey}} {
		for _, a := range []*proc{a1, a2} {
			if code, o, e := runCLIProc(bin, a.base, append([]string{"keys"}, step...)...); code != 0 {
				t.Fatalf("keys %s on %s: %d %s %s", step[0], a.id, code, o, e)
			}
		}
	}
	code, listed, _ := runCLIProc(bin, a1.base, "keys", "list", "-json")
	newFP := fingerprintOf(t, newKey)
	if code != 0 || !strings.Contains(listed, newFP) || strings.Contains(listed, fingerprintOf(t, oldKey)) {
		t.Fatalf("keys list after the rotation: %d %s", code, listed)
	}
	if strings.Contains(listed, newKey) {
		t.Fatal("keys list shows a key, not its fingerprint")
	}
	kr, err := loadKeyring(file)
	if err != nil || len(kr.Keys()) != 1 || base64.StdEncoding.EncodeToString(kr.Keys()[0]) != newKey {
		t.Fatalf("keyring file after the rotation: %v", err)
	}
	if code, _, e := runCLIProc(bin, a1.base, "keys", "remove", newKey); code != exitError || !strings.Contains(e, "primary") {
		t.Fatalf("removing the primary key: %d %s", code, e)
	}
	a2.mustRequest("PUT", "/v1/kv/after", "rotation", 200)
	eventually(t, 10*time.Second, "an update after the rotation", func() bool {
		code, body, _ := a1.request("GET", "/v1/kv/after?node=enc-2", "")
		return code == 200 && strings.Contains(body, "rotation")
	})
	if st := a1.statusOf("enc-2"); st != "alive" {
		t.Fatalf("enc-2 is %s after the rotation", st)
	}
}

func fingerprintOf(t *testing.T, key string) string {
	k, err := parseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return scuttlebutt.Fingerprint(k)
}

// Bad encryption flags and files are refused at start with a message that
// says what to do.
func TestEncryptionBadFlags(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	open := filepath.Join(dir, "open.json")
	os.WriteFile(open, []byte(`{"keys":["`+newKey()+`"]}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-encrypt", "not base64!"}, "base64"},
		{[]string{"-encrypt", base64.StdEncoding.EncodeToString(make([]byte, 20))}, "20 bytes"},
		{[]string{"-keyring-file", open}, "chmod 600"},
		{[]string{"-keyring-file", filepath.Join(dir, "missing.json")}, "-encrypt"},
		{[]string{"-encrypt-accept-plaintext"}, "need -encrypt"},
		{[]string{"-http-tls-cert", "x.pem"}, "go together"},
	} {
		cmd := exec.Command(bin, append([]string{"agent", "-bind", "127.0.0.1:0", "-http", ""}, tc.args...)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q (want %q)", tc.args, code, errb.String(), tc.want)
		}
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key, and returns their paths.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scuttlebutt test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// The HTTP API over TLS: the CLI reaches it with -cacert, and not without
// trusting the certificate; plain HTTP gets no answer.
func TestAgentHTTPOverTLS(t *testing.T) {
	bin := binary(t)
	cert, key := writeSelfSigned(t, t.TempDir())
	a := startAgentProc(t, bin, "tls-1", "-http-tls-cert", cert, "-http-tls-key", key)
	base := strings.Replace(a.base, "http://", "https://", 1)
	if code, out, e := runCLIProc(bin, base, "members", "-cacert", cert); code != 0 || !strings.Contains(out, "tls-1") {
		t.Fatalf("members over TLS: %d %q %q", code, out, e)
	}
	if code, _, e := runCLIProc(bin, base, "members"); code != exitError || !strings.Contains(e, "certificate") {
		t.Fatalf("members without trusting the certificate: %d %q", code, e)
	}
	if code, _, err := a.request("GET", "/v1/nodes", ""); err == nil && code == 200 {
		t.Fatal("plain HTTP answered on the TLS port")
	}
}
