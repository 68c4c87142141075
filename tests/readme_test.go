package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// TestReadme runs every command of README.md's sh blocks in README's
// order, as written but for the placeholders below, and checks what each
// one does, not only its exit status. A command README has and this test
// does not know fails the test, and so does a step whose command README no
// longer has: README and this test cannot drift apart.
//
// Placeholders, replaced in the command's text before /bin/sh runs it:
//
//	go run ./scuttlebutt     the binary go run builds, on PATH as scuttlebutt
//	127.0.0.1:7777           a free port (-http for the demo, SCUTTLEBUTT_HTTP
//	                         for agents, SCUTTLEBUTT_HTTP_PORT for compose)
//	0.0.0.0:8119             127.0.0.1:0 (this machine has loopback only)
//	10.0.0.2:8119            the gossip address of the cluster the step joins:
//	                         the demo's first node; for the encrypted agent, an
//	                         encrypted agent the test starts with the same key
//	10.0.0.7:9200            a local HTTP server answering 200
//	host-3                   node-05, a node of the demo
//	s3://my-bucket/prod      a bucket of an S3 test server (gofakes3) in this
//	                         process, through AWS_ENDPOINT_URL
//	./start-consul.sh        a script that records its environment
//	/etc/scuttlebutt/, /var/lib/scuttlebutt/, /shared/dir
//	                         directories under t.TempDir()
//	elasticsearch            an image built FROM scratch here (nothing can be
//	                         pulled): an HTTP server on :9200 answering /health
//	-p 9200:9200             -p 127.0.0.1::9200 (any free host port)
//	-p 8600                  the port of the demo's DNS server (-dns, a free port)
//	the benchmarks           the same programs and flags on tiny sizes
//
// The CLI reaches the agent under test through SCUTTLEBUTT_ADDR, as README
// says it may, and the demo runs with -lively=false so that its answers
// hold still while they are checked.
func TestReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("runs agents, Docker and the benchmarks: skipped with -short")
	}
	needTool(t, "the Docker engine", "docker", "version")
	needTool(t, "docker-compose", "docker-compose", "version")
	needTool(t, "make", "make", "--version")

	r := newReadmeRun(t)
	type doc struct {
		path  string
		cmds  []readmeCommand
		steps []readmeStep
	}
	docs := []*doc{{path: "../README.md", steps: readmeSteps}, {path: "../docs/daemon.md", steps: daemonDocSteps}}
	for _, d := range docs {
		cmds, err := readmeCommands(d.path)
		if err != nil {
			t.Fatal(err)
		}
		d.cmds = cmds
		known := map[string]bool{}
		for _, s := range d.steps {
			known[s.cmd] = true
		}
		var unknown []string
		inDoc := map[string]bool{}
		for _, c := range cmds {
			inDoc[c.text] = true
			if !known[c.text] {
				unknown = append(unknown, fmt.Sprintf("%s:%d: %s", d.path, c.line, c.text))
			}
		}
		if len(unknown) > 0 {
			t.Errorf("%s has commands TestReadme does not know; add each to its steps with a check of what it does:\n%s",
				d.path, strings.Join(unknown, "\n"))
		}
		for _, s := range d.steps {
			if !inDoc[s.cmd] {
				t.Errorf("the steps of %s have %q, which it no longer has: update or drop the step", d.path, s.cmd)
			}
		}
	}
	if t.Failed() {
		return
	}
	for _, d := range docs {
		for _, c := range d.cmds {
			i := slices.IndexFunc(d.steps, func(s readmeStep) bool { return s.cmd == c.text })
			t.Logf("%s:%d: %s", d.path, c.line, c.text)
			start := time.Now()
			d.steps[i].run(r, c.text)
			t.Logf("  checked in %v", time.Since(start).Round(time.Millisecond))
			if t.Failed() {
				t.Fatalf("%s:%d: %s: failed (see above)", d.path, c.line, c.text)
			}
		}
	}
	r.finish()
}

// readmeStep is how TestReadme runs and checks one command of README.md.
type readmeStep struct {
	cmd string // as README.md has it, comments dropped
	run func(r *readmeRun, cmd string)
}

var readmeSteps = []readmeStep{
	{`go run ./scuttlebutt demo -nodes 5`, (*readmeRun).demo},
	{`go test ./...`, func(r *readmeRun, _ string) {
		r.t.Log("  not run here: it is the command that runs this test (CI runs it)")
	}},
	{`scuttlebutt agent -id host-1 -bind 0.0.0.0:8119 -join 10.0.0.2:8119 -docker`, (*readmeRun).agentHost1},
	{`scuttlebutt members`, (*readmeRun).members},
	{`scuttlebutt services web`, (*readmeRun).servicesWeb},
	{`scuttlebutt hosts --label web`, (*readmeRun).hostsWeb},
	{`scuttlebutt kv set greeting hello`, (*readmeRun).kvSet},
	{`scuttlebutt decommission host-3`, (*readmeRun).decommission},
	{`export AWS_REGION=eu-west-1`, (*readmeRun).export},
	{`scuttlebutt agent -registry s3://my-bucket/prod -servers 3 -exec 'exec ./start-consul.sh'`, (*readmeRun).registryAgent},
	{`scuttlebutt registry list -registry s3://my-bucket/prod`, (*readmeRun).registryList},
	{`scuttlebutt agent -registry file:///shared/dir`, (*readmeRun).fileRegistryAgent},
	{`scuttlebutt keygen > /etc/scuttlebutt/key`, (*readmeRun).keygen},
	{`scuttlebutt agent -encrypt "$(cat /etc/scuttlebutt/key)" -keyring-file /var/lib/scuttlebutt/keyring.json -join 10.0.0.2:8119`, (*readmeRun).encryptedAgent},
	{`dig @127.0.0.1 -p 8600 web.service.scuttlebutt SRV`, (*readmeRun).digWeb},
	{`make image && docker-compose up -d`, (*readmeRun).composeUp},
	{`docker-compose down`, (*readmeRun).composeDown},
	{`docker run -d -p 9200:9200 -l scuttlebutt.service=es -l scuttlebutt.check.http=/health -l scuttlebutt.check.interval=5s elasticsearch`, (*readmeRun).dockerRunES},
	{`scuttlebutt watch --label es --service-id es-1 --monitor-url http://10.0.0.7:9200/ --service-info '{"transport_port": 9300}'`, (*readmeRun).watchES},
	{`scuttlebutt acquire-lease --label es --service-id es-1`, (*readmeRun).acquireLease},
	{`scuttlebutt release-lease --label es --service-id es-1`, (*readmeRun).releaseLease},
	{`go run ./bench/cluster -n 16,64,128`, func(r *readmeRun, cmd string) {
		r.bench(cmd, []string{"-n 16,64,128", "-n 4 -updates 2 -crashes 1 -warm 2s"}, `(?s)N=4 .*reach all: p50 .* missed 0.*crash 1: first`)
	}},
	{`go run ./bench/cluster -n 128 -loss 0.1 -falsedeaths 10m`, func(r *readmeRun, cmd string) {
		r.bench(cmd, []string{"-n 128", "-n 4", "-falsedeaths 10m", "-falsedeaths 3s"}, `N=4 interval=100ms loss=10% over 3s: \d+ false deaths`)
	}},
	{`(cd bench/memberlist && go run . -n 128)`, func(r *readmeRun, cmd string) {
		r.bench(cmd, []string{"-n 128", "-n 4 -updates 2 -crashes 1 -warm 1s -idle 2s -straggle 30s"},
			`(?s)update reaches every node, max \| [0-9.]+ s \| [0-9.]+ s .*crash declared dead by every node`)
	}},
	{`go run ./bench/sim -n 16,64,128,1000 -loss-n 0`, func(r *readmeRun, cmd string) {
		r.bench(cmd, []string{"-n 16,64,128,1000", "-n 16"}, `(?m)B/node/s idle.*\n\s+16\s+2\.5\s+\d+ms`)
	}},
	{`go run ./bench/sim -n "" -loss-n 1000 -loss-for 2m -losses 0.1,0.3`, func(r *readmeRun, cmd string) {
		r.bench(cmd, []string{"-loss-n 1000", "-loss-n 16", "-loss-for 2m", "-loss-for 10s"}, `(?s)false deaths.*\n\s+10%\s+16\s+10s.*\n\s+30%\s+16\s+10s`)
	}},
}

// daemonDocSteps are the commands of docs/daemon.md's sh blocks ("Try it"),
// run after README's, while README's demo still runs; the CLI reaches the
// demo's first node (127.0.0.1:7777 → the demo's address).
var daemonDocSteps = []readmeStep{
	{`go run ./scuttlebutt demo -nodes 5`, func(r *readmeRun, _ string) {
		r.t.Log("  README's first command, running since README's steps (checked there)")
		r.env = append(r.env, "SCUTTLEBUTT_ADDR=http://"+r.demoHTTP) // the later one wins
	}},
	{`go run ./scuttlebutt members`, func(r *readmeRun, cmd string) {
		out := r.mustSh(cmd, 10*time.Second)
		if !readmeRowHas(out, "node-01", "alive") || !readmeRowHas(out, "host-1", "alive") {
			r.t.Errorf("members (on the demo): no row of node-01 and host-1 alive:\n%s", out)
		}
	}},
	{`go run ./scuttlebutt services web`, (*readmeRun).servicesWeb},
	{`go run ./scuttlebutt kv set greeting hello`, func(r *readmeRun, cmd string) {
		r.mustSh(cmd, 10*time.Second)
		waitFor(r.t, 10*time.Second, "greeting=hello of node-01 on host-1", func() bool {
			var v struct{ State map[string]string }
			return httpGetJSON("http://"+r.host1HTTP+"/v1/nodes/node-01", &v) == nil && v.State["greeting"] == "hello"
		})
	}},
	{`go run ./scuttlebutt decommission node-02`, func(r *readmeRun, cmd string) {
		r.mustSh(cmd, 10*time.Second)
		waitFor(r.t, 15*time.Second, "node-02 left and decommissioned in host-1's view", func() bool {
			ns, err := readmeNodes("http://" + r.host1HTTP)
			return err == nil && ns["node-02"].Status == "left" && ns["node-02"].Decommissioned
		})
	}},
}

// readmeCommand is one command of a sh block of README.md.
type readmeCommand struct {
	line int    // where it starts
	text string // continuation lines joined, the comment dropped
}

// readmeCommands returns the commands of the sh blocks of the file at path.
func readmeCommands(path string) ([]readmeCommand, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		out     []readmeCommand
		inBlock bool
		pending string
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !inBlock && strings.TrimSpace(line) == "```sh":
			inBlock = true
			continue
		case inBlock && strings.TrimSpace(line) == "```":
			inBlock = false
			if pending != "" {
				return nil, fmt.Errorf("%s:%d: a command continues past the end of its block", path, start)
			}
			continue
		case !inBlock:
			continue
		}
		code := strings.TrimSpace(dropComment(line))
		if pending == "" {
			start = n
		}
		if cont, ok := strings.CutSuffix(code, `\`); ok {
			pending += strings.TrimSpace(cont) + " "
			continue
		}
		if text := strings.TrimSpace(pending + code); text != "" {
			out = append(out, readmeCommand{line: start, text: text})
		}
		pending = ""
	}
	return out, sc.Err()
}

// dropComment cuts a shell comment (a # at the start of a word, outside
// quotes) off line.
func dropComment(line string) string {
	var quote rune
	for i, c := range line {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}

// readmeRun is the state of one run of README's commands: the processes
// started so far and what the later commands are checked against.
type readmeRun struct {
	t    *testing.T
	bin  string // the directory of the scuttlebutt binary
	dir  string // the commands' working directory
	root string // the repository's, for make, docker-compose and go run
	env  []string
	subs map[string]string // placeholder → value

	demoProc, host1, watchProc *readmeProc
	demoHTTP, host1HTTP        string
	demoDNS                    string
	bucket                     string
	esContainer                string
	composeProject             string
}

func newReadmeRun(t *testing.T) *readmeRun {
	bin := filepath.Dir(agentBinary(t))
	dir := t.TempDir()
	for _, d := range []string{"etc", "var", "shared"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	r := &readmeRun{t: t, bin: bin, dir: dir, root: root, bucket: "readme-bucket"}
	r.env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
	r.subs = map[string]string{
		"go run ./scuttlebutt ": "scuttlebutt ",
		"0.0.0.0:8119":          "127.0.0.1:0",
		"host-3":                "node-05",
		"s3://my-bucket/prod":   "s3://" + r.bucket + "/prod",
		"./start-consul.sh":     filepath.Join(dir, "start-consul.sh"),
		"/etc/scuttlebutt/":     filepath.Join(dir, "etc") + "/",
		"file:///shared/dir":    "file://" + filepath.Join(dir, "shared"),
		"/var/lib/scuttlebutt/": filepath.Join(dir, "var") + "/",
		"-p 9200:9200":          "-p 127.0.0.1::9200",
		"http://10.0.0.7:9200/": "", // set by the watch step
	}
	return r
}

// expand replaces the placeholders in cmd.
func (r *readmeRun) expand(cmd string) string {
	keys := make([]string, 0, len(r.subs))
	for k := range r.subs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) }) // longest first
	for _, k := range keys {
		if v := r.subs[k]; v != "" {
			cmd = strings.ReplaceAll(cmd, k, v)
		}
	}
	return cmd
}

// sh runs cmd (expanded) to its end and returns its exit status, standard
// output and standard error.
func (r *readmeRun) sh(cmd string, timeout time.Duration, env ...string) (int, string, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", r.expand(cmd))
	c.Dir = r.dir
	c.Env = append(append(os.Environ(), r.env...), env...)
	var stdout, stderr strings.Builder
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	if ctx.Err() != nil {
		r.t.Fatalf("%s: still running after %v\nstdout:\n%s\nstderr:\n%s", r.expand(cmd), timeout, stdout.String(), stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("%s: %v", r.expand(cmd), err)
	}
	return code, stdout.String(), stderr.String()
}

// mustSh is sh, failing the test unless the command exits 0.
func (r *readmeRun) mustSh(cmd string, timeout time.Duration, env ...string) string {
	r.t.Helper()
	code, out, errOut := r.sh(cmd, timeout, env...)
	if code != 0 {
		r.t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", r.expand(cmd), code, out, errOut)
	}
	return out
}

// readmeProc is a command of README that runs until stopped.
type readmeProc struct {
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
	code int
}

// background starts cmd (expanded, through exec so that signals reach the
// program itself); it is killed at the end of the test if still running.
func (r *readmeRun) background(cmd string, env ...string) *readmeProc {
	r.t.Helper()
	c := exec.Command("/bin/sh", "-c", "exec "+r.expand(cmd))
	c.Dir = r.dir
	c.Env = append(append(os.Environ(), r.env...), env...)
	p := &readmeProc{cmd: c, out: &logBuffer{}, done: make(chan struct{})}
	c.Stdout, c.Stderr = p.out, p.out
	if err := c.Start(); err != nil {
		r.t.Fatalf("%s: %v", r.expand(cmd), err)
	}
	go func() {
		err := c.Wait()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	r.t.Cleanup(func() {
		if !p.exited() {
			// SIGTERM first: an agent stops its -exec command then.
			c.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				c.Process.Kill()
				<-p.done
			}
		}
		if r.t.Failed() {
			r.t.Logf("output of %s:\n%s", r.expand(cmd), p.out.String())
		}
	})
	return p
}

func (p *readmeProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and returns the exit status, failing t after 20 s.
func (p *readmeProc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.code
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after %v", sig)
		return -1
	}
}

// readmeNode is a node as GET /v1/nodes shows it.
type readmeNode struct {
	ID             string `json:"id"`
	Addr           string `json:"addr"`
	Status         string `json:"status"`
	Local          bool   `json:"local"`
	Decommissioned bool   `json:"decommissioned"`
}

func readmeNodes(base string) (map[string]readmeNode, error) {
	var v struct{ Nodes []readmeNode }
	if err := httpGetJSON(base+"/v1/nodes", &v); err != nil {
		return nil, err
	}
	out := map[string]readmeNode{}
	for _, n := range v.Nodes {
		out[n.ID] = n
	}
	return out, nil
}

// aliveIDs returns the IDs the agent at base sees alive, sorted (nil if it
// does not answer).
func aliveIDs(base string) []string {
	ns, err := readmeNodes(base)
	if err != nil {
		return nil
	}
	var ids []string
	for _, n := range ns {
		if n.Status == "alive" {
			ids = append(ids, n.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// readmeInstance is an instance as GET /v1/services/{name} shows it.
type readmeInstance struct {
	Node    string `json:"node"`
	Addr    string `json:"addr"`
	Healthy bool   `json:"healthy"`
	Verdict string `json:"verdict"`
	Key     string `json:"key"`
}

func readmeInstances(base, service string) []readmeInstance {
	var v struct{ Instances []readmeInstance }
	if err := httpGetJSON(base+"/v1/services/"+service, &v); err != nil {
		return nil
	}
	return v.Instances
}

// readmeFreeDNSAddr returns a loopback address whose port is free for UDP
// and TCP both.
func readmeFreeDNSAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return ""
}

func readmeFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (r *readmeRun) demo(cmd string) {
	r.demoHTTP = readmeFreeAddr(r.t)
	r.demoDNS = readmeFreeDNSAddr(r.t)
	_, dnsPort, _ := net.SplitHostPort(r.demoDNS)
	r.subs["-p 8600"] = "-p " + dnsPort
	r.demoProc = r.background(cmd + " -http " + r.demoHTTP + " -dns " + r.demoDNS + " -lively=false")
	want := []string{"node-01", "node-02", "node-03", "node-04", "node-05"}
	base := "http://" + r.demoHTTP
	waitFor(r.t, 30*time.Second, "the demo's five nodes alive on its page's API", func() bool {
		return slices.Equal(aliveIDs(base), want)
	})
	resp, err := http.Get(base + "/")
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		r.t.Fatalf("the demo's page: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if n := len(readmeInstances(base, "web")); n != 2 {
		r.t.Fatalf("the demo publishes %d instances of web, want 2", n)
	}
	waitFor(r.t, 5*time.Second, "the demo to print where to look", func() bool {
		return strings.Contains(r.demoProc.out.String(), "web page:  "+base+"/")
	})
	ns, _ := readmeNodes(base)
	r.subs["10.0.0.2:8119"] = ns["node-01"].Addr
}

// digWeb asks the demo's DNS server for the SRV records of web: its two
// instances.
func (r *readmeRun) digWeb(cmd string) {
	out := r.mustSh(cmd, 10*time.Second)
	if n := strings.Count(out, "\tIN\tSRV\t"); n != 2 || !strings.Contains(out, "status: NOERROR") {
		r.t.Errorf("dig web.service.scuttlebutt SRV on the demo: %d SRV records, want 2:\n%s", n, out)
	}
}

func (r *readmeRun) agentHost1(cmd string) {
	r.host1HTTP = readmeFreeAddr(r.t)
	r.host1 = r.background(cmd, "SCUTTLEBUTT_HTTP="+r.host1HTTP)
	r.env = append(r.env, "SCUTTLEBUTT_ADDR=http://"+r.host1HTTP)
	base := "http://" + r.host1HTTP
	want := []string{"host-1", "node-01", "node-02", "node-03", "node-04", "node-05"}
	waitFor(r.t, 30*time.Second, "host-1 to join the demo's five nodes", func() bool {
		return slices.Equal(aliveIDs(base), want)
	})
	waitFor(r.t, 10*time.Second, "host-1 to publish this host's containers (-docker)", func() bool {
		return strings.Contains(r.host1.out.String(), "publishing this host's container services")
	})
	waitFor(r.t, 10*time.Second, "the demo to see host-1", func() bool {
		return slices.Contains(aliveIDs("http://"+r.demoHTTP), "host-1")
	})
}

func (r *readmeRun) members(cmd string) {
	out := r.mustSh(cmd, 10*time.Second)
	for _, id := range []string{"host-1", "node-01", "node-05"} {
		if !readmeRowHas(out, id, "alive") {
			r.t.Errorf("members: no row of %s alive:\n%s", id, out)
		}
	}
}

// readmeRowHas reports whether a line of out has every word of words.
func readmeRowHas(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && !slices.ContainsFunc(words, func(w string) bool { return !slices.Contains(f, w) }) {
			return true
		}
	}
	return false
}

func (r *readmeRun) servicesWeb(cmd string) {
	out := r.mustSh(cmd, 10*time.Second)
	ins := readmeInstances("http://"+r.host1HTTP, "web")
	if len(ins) != 2 {
		r.t.Fatalf("host-1 holds %d instances of web, want the demo's 2", len(ins))
	}
	for _, in := range ins {
		if !strings.Contains(out, in.Addr) || !strings.Contains(out, in.Node) {
			r.t.Errorf("services web: no line of %s on %s:\n%s", in.Addr, in.Node, out)
		}
	}
}

func (r *readmeRun) hostsWeb(cmd string) {
	out := strings.TrimSpace(r.mustSh(cmd, 10*time.Second))
	var want []string
	for _, in := range readmeInstances("http://"+r.host1HTTP, "web") {
		if h, _, _ := net.SplitHostPort(in.Addr); in.Healthy && !slices.Contains(want, h) {
			want = append(want, h)
		}
	}
	got := strings.Split(out, ",")
	slices.Sort(got)
	slices.Sort(want)
	if len(want) == 0 || !slices.Equal(got, want) {
		r.t.Errorf("hosts --label web printed %q, want the healthy instances %q", out, want)
	}
}

func (r *readmeRun) kvSet(cmd string) {
	r.mustSh(cmd, 10*time.Second)
	waitFor(r.t, 10*time.Second, "greeting=hello of host-1 on the demo's node-01", func() bool {
		var v struct{ State map[string]string }
		return httpGetJSON("http://"+r.demoHTTP+"/v1/nodes/host-1", &v) == nil && v.State["greeting"] == "hello"
	})
}

func (r *readmeRun) decommission(cmd string) {
	r.mustSh(cmd, 10*time.Second)
	waitFor(r.t, 15*time.Second, "node-05 left and decommissioned in host-1's view", func() bool {
		ns, err := readmeNodes("http://" + r.host1HTTP)
		return err == nil && ns["node-05"].Status == "left" && ns["node-05"].Decommissioned
	})
}

func (r *readmeRun) export(cmd string) {
	kv, ok := strings.CutPrefix(cmd, "export ")
	if !ok || !strings.Contains(kv, "=") {
		r.t.Fatalf("%q: want export NAME=VALUE", cmd)
	}
	r.env = append(r.env, kv)
}

// s3 starts the S3 test server with the bucket and puts its endpoint and
// test credentials in the environment of the later commands.
func (r *readmeRun) s3() {
	be := s3mem.New()
	if err := be.CreateBucket(r.bucket); err != nil {
		r.t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	r.t.Cleanup(srv.Close)
	r.env = append(r.env,
		"AWS_ENDPOINT_URL="+srv.URL,
		"AWS_ACCESS_KEY_ID=readme-key", "AWS_SECRET_ACCESS_KEY=readme-secret",
		"AWS_CONFIG_FILE="+filepath.Join(r.dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(r.dir, "aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PROFILE=")
}

func (r *readmeRun) registryAgent(cmd string) {
	r.s3()
	envFile := filepath.Join(r.dir, "consul-env")
	script := "#!/bin/sh\nenv | grep '^SCUTTLEBUTT_' > " + envFile + ".tmp && mv " + envFile + ".tmp " + envFile + "\nexec sleep 3600\n"
	if err := os.WriteFile(filepath.Join(r.dir, "start-consul.sh"), []byte(script), 0o755); err != nil {
		r.t.Fatal(err)
	}
	r.background(cmd, "SCUTTLEBUTT_ID=reg-1", "SCUTTLEBUTT_BIND=127.0.0.1:0", "SCUTTLEBUTT_HTTP="+readmeFreeAddr(r.t))
	var env string
	waitFor(r.t, 30*time.Second, "-exec to start ./start-consul.sh with its role", func() bool {
		b, err := os.ReadFile(envFile)
		env = string(b)
		return err == nil
	})
	// SCUTTLEBUTT_SERVERS: the other servers' addresses, none yet.
	for _, want := range []string{"SCUTTLEBUTT_ROLE=server", "SCUTTLEBUTT_BOOTSTRAP=true", "SCUTTLEBUTT_SERVERS=", "SCUTTLEBUTT_ID=reg-1"} {
		if !slices.Contains(strings.Split(strings.TrimSpace(env), "\n"), want) {
			r.t.Errorf("start-consul.sh ran without %s; its environment:\n%s", want, env)
		}
	}
}

func (r *readmeRun) registryList(cmd string) {
	waitFor(r.t, 20*time.Second, "registry list to show reg-1 live", func() bool {
		code, out, _ := r.sh(cmd, 10*time.Second)
		return code == 0 && readmeRowHas(out, "reg-1", "live")
	})
}

func (r *readmeRun) fileRegistryAgent(cmd string) {
	r.background(cmd, "SCUTTLEBUTT_ID=file-1", "SCUTTLEBUTT_BIND=127.0.0.1:0", "SCUTTLEBUTT_HTTP="+readmeFreeAddr(r.t))
	beat := filepath.Join(r.dir, "shared", "agents", "file-1.json")
	waitFor(r.t, 20*time.Second, "the agent's heartbeat in the directory", func() bool {
		b, err := os.ReadFile(beat)
		var e struct{ ID, Addr string }
		return err == nil && json.Unmarshal(b, &e) == nil && e.ID == "file-1" && strings.HasPrefix(e.Addr, "127.0.0.1:")
	})
}

func (r *readmeRun) keygen(cmd string) {
	r.mustSh(cmd, 10*time.Second)
	b, err := os.ReadFile(filepath.Join(r.dir, "etc", "key"))
	if err != nil {
		r.t.Fatal(err)
	}
	if key := strings.TrimSpace(string(b)); len(key) < 20 {
		r.t.Fatalf("keygen wrote %q, not a key", key)
	}
}

func (r *readmeRun) encryptedAgent(cmd string) {
	// The cluster it joins: an agent with the same key.
	key, err := os.ReadFile(filepath.Join(r.dir, "etc", "key"))
	if err != nil {
		r.t.Fatal(err)
	}
	seedHTTP := readmeFreeAddr(r.t)
	r.background("scuttlebutt agent -id secret-seed -bind 127.0.0.1:0 -cluster secret",
		"SCUTTLEBUTT_ENCRYPT="+strings.TrimSpace(string(key)), "SCUTTLEBUTT_HTTP="+seedHTTP)
	var seedAddr string
	waitFor(r.t, 10*time.Second, "the encrypted seed to start", func() bool {
		ns, err := readmeNodes("http://" + seedHTTP)
		seedAddr = ns["secret-seed"].Addr
		return err == nil
	})
	old := r.subs["10.0.0.2:8119"]
	r.subs["10.0.0.2:8119"] = seedAddr
	defer func() { r.subs["10.0.0.2:8119"] = old }()
	agentHTTP := readmeFreeAddr(r.t)
	r.background(cmd, "SCUTTLEBUTT_ID=secret-1", "SCUTTLEBUTT_BIND=127.0.0.1:0", "SCUTTLEBUTT_CLUSTER=secret",
		"SCUTTLEBUTT_HTTP="+agentHTTP)
	waitFor(r.t, 20*time.Second, "the encrypted agent and its seed to see each other alive", func() bool {
		want := []string{"secret-1", "secret-seed"}
		return slices.Equal(aliveIDs("http://"+agentHTTP), want) && slices.Equal(aliveIDs("http://"+seedHTTP), want)
	})
	st, err := os.Stat(filepath.Join(r.dir, "var", "keyring.json"))
	if err != nil {
		r.t.Fatalf("-keyring-file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		r.t.Errorf("the keyring file has mode %v, want 0600", st.Mode().Perm())
	}
	var ks struct {
		Keys []struct{ Fingerprint string }
	}
	if err := httpGetJSON("http://"+agentHTTP+"/v1/keys", &ks); err != nil || len(ks.Keys) != 1 {
		r.t.Errorf("the encrypted agent's keyring: %v, %+v; want one key", err, ks)
	}
}

// composeEnv is the environment of the compose commands: a project of this
// run, its page on a free port.
func (r *readmeRun) composeEnv() []string {
	if r.composeProject == "" {
		r.composeProject = fmt.Sprintf("readme%d", os.Getpid())
		r.t.Cleanup(func() {
			exec.Command("docker-compose", "-f", "../docker-compose.yml", "-p", r.composeProject, "down", "-t", "1").Run()
		})
	}
	return []string{"COMPOSE_PROJECT_NAME=" + r.composeProject, "SCUTTLEBUTT_HTTP_PORT=" + r.composePort()}
}

var composePort struct {
	once sync.Once
	port string
}

func (r *readmeRun) composePort() string {
	composePort.once.Do(func() {
		_, composePort.port, _ = net.SplitHostPort(readmeFreeAddr(r.t))
	})
	return composePort.port
}

func (r *readmeRun) composeUp(cmd string) {
	env := r.composeEnv()
	r.mustSh("cd "+r.root+" && "+cmd, 5*time.Minute, env...)
	base := "http://127.0.0.1:" + r.composePort()
	want := []string{"node-1", "node-2", "node-3", "node-4", "node-5"}
	waitFor(r.t, 60*time.Second, "the five compose agents alive on node-1's page API", func() bool {
		return slices.Equal(aliveIDs(base), want)
	})
	resp, err := http.Get(base + "/")
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		r.t.Fatalf("node-1's page: %s", resp.Status)
	}
}

func (r *readmeRun) composeDown(cmd string) {
	env := r.composeEnv()
	r.mustSh("cd "+r.root+" && "+cmd, 2*time.Minute, env...)
	if out := docker(r.t, "ps", "-aq", "--filter", "label=com.docker.compose.project="+r.composeProject); out != "" {
		r.t.Fatalf("containers of the compose project left after down: %s", out)
	}
}

// esImage builds the stand-in for elasticsearch: docker/internal/testapp
// serving on :9200, in an image FROM scratch.
func (r *readmeRun) esImage() string {
	dir := r.t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "app"),
		"github.com/scuttlebutt-go/scuttlebutt/docker/internal/testapp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		r.t.Fatalf("go build testapp: %v\n%s", err, out)
	}
	df := "FROM scratch\nCOPY app /app\nEXPOSE 9200\nENTRYPOINT [\"/app\", \"-addr\", \":9200\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		r.t.Fatal(err)
	}
	tag := fmt.Sprintf("scuttlebutt-readme-es:%d", os.Getpid())
	docker(r.t, "build", "-q", "-t", tag, dir)
	r.t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	return tag
}

func (r *readmeRun) dockerRunES(cmd string) {
	r.esContainer = fmt.Sprintf("scuttlebutt-readme-es-%d", os.Getpid())
	r.subs["elasticsearch"] = "--name " + r.esContainer + " " + r.esImage()
	r.t.Cleanup(func() { exec.Command("docker", "rm", "-f", r.esContainer).Run() })
	r.mustSh(cmd, time.Minute)
	delete(r.subs, "elasticsearch")
	hostPort := strings.Split(docker(r.t, "port", r.esContainer, "9200/tcp"), "\n")[0]
	waitFor(r.t, 30*time.Second, "es published by host-1's Docker adapter, its check passing, seen on the demo", func() bool {
		for _, in := range readmeInstances("http://"+r.demoHTTP, "es") {
			if in.Node == "host-1" && in.Addr == hostPort && in.Healthy && in.Verdict == "passing" {
				return true
			}
		}
		return false
	})
}

func (r *readmeRun) watchES(cmd string) {
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	r.t.Cleanup(es.Close)
	r.subs["http://10.0.0.7:9200/"] = es.URL + "/"
	r.watchProc = r.background(cmd)
	waitFor(r.t, 20*time.Second, "es-1 registered by watch, passing, seen on the demo", func() bool {
		return readmeES1("http://"+r.demoHTTP) == "passing"
	})
}

// readmeES1 returns the verdict of the instance es-1 of es at base, or "".
func readmeES1(base string) string {
	for _, in := range readmeInstances(base, "es") {
		if slices.Contains(strings.Split(in.Key, "/"), "es-1") && in.Healthy {
			return in.Verdict
		}
	}
	return ""
}

func (r *readmeRun) acquireLease(cmd string) {
	code, _, errOut := r.sh(cmd, 2*time.Minute)
	if code != 0 || !strings.Contains(errOut, "lease of es held by es-1") {
		r.t.Fatalf("acquire-lease: exit %d, said %q; want exit 0 and the lease held", code, errOut)
	}
}

func (r *readmeRun) releaseLease(cmd string) {
	if _, _, errOut := r.sh(cmd, 30*time.Second); !strings.Contains(errOut, "lease of es released by es-1") {
		r.t.Fatalf("release-lease said %q", errOut)
	}
	var v struct {
		Local []struct{ Label, ServiceID, State string } `json:"local"`
	}
	if err := httpGetJSON("http://"+r.host1HTTP+"/v1/leases", &v); err != nil {
		r.t.Fatal(err)
	}
	for _, l := range v.Local {
		if l.Label == "es" && l.ServiceID == "es-1" && l.State != "released" {
			r.t.Fatalf("after release-lease the lease of es-1 is %q", l.State)
		}
	}
}

// bench runs a benchmark command of README with the flags of subs
// (pairs: from, to) and checks that what it prints matches want.
func (r *readmeRun) bench(cmd string, subs []string, want string) {
	for i := 0; i < len(subs); i += 2 {
		if !strings.Contains(cmd, subs[i]) {
			r.t.Fatalf("%q has no %q to make small", cmd, subs[i])
		}
		cmd = strings.Replace(cmd, subs[i], subs[i+1], 1)
	}
	cmd = "cd " + r.root + " && " + cmd
	out := r.mustSh(cmd, 5*time.Minute)
	if !regexp.MustCompile(want).MatchString(out) {
		r.t.Fatalf("%s printed nothing that matches %s:\n%s", cmd, want, out)
	}
}

// finish stops what README's commands started, as README says they stop,
// and checks that they did: watch withdraws on SIGTERM; the demo's nodes
// leave on SIGINT and it exits 0.
func (r *readmeRun) finish() {
	t := r.t
	if r.watchProc != nil {
		if code := r.watchProc.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("watch exited %d on SIGTERM, want 0", code)
		}
		waitFor(t, 10*time.Second, "es-1 withdrawn everywhere after watch's SIGTERM", func() bool {
			return readmeES1("http://"+r.demoHTTP) == "" && readmeES1("http://"+r.host1HTTP) == ""
		})
	}
	if r.demoProc != nil {
		if code := r.demoProc.stop(t, syscall.SIGINT); code != 0 {
			t.Errorf("the demo exited %d on SIGINT, want 0", code)
		}
		waitFor(t, 10*time.Second, "every node of the demo left, in host-1's view", func() bool {
			ns, err := readmeNodes("http://" + r.host1HTTP)
			if err != nil {
				return false
			}
			for _, id := range []string{"node-01", "node-03", "node-04"} { // node-02 and node-05 were decommissioned
				if ns[id].Status != "left" {
					return false
				}
			}
			return true
		})
	}
}
