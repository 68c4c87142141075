package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// This file holds the test harness: a real Docker engine, a test image built
// FROM scratch out of internal/testapp, containers labelled with this run's
// label, and a unix-socket proxy of the engine that a test can cut.

const runLabel = "scuttlebutt.test.run"

var (
	runID = func() string {
		b := make([]byte, 6)
		rand.Read(b)
		return hex.EncodeToString(b)
	}()
	imageRepo = "scuttlebutt-testapp"
	imageRef  = imageRepo + ":" + runID

	engineOnce sync.Once
	engineCli  *client.Client
	engineErr  error

	imageOnce sync.Once
	imageErr  error
	imageMade bool
)

func TestMain(m *testing.M) {
	code := m.Run()
	if engineCli != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		removeRunContainers(ctx, engineCli)
		if imageMade {
			engineCli.ImageRemove(ctx, imageRef, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
		cancel()
		engineCli.Close()
	}
	os.Exit(code)
}

// engine returns a client of the local engine, or skips the test when none
// is reachable (fails instead when CI=true).
func engine(t testing.TB) *client.Client {
	t.Helper()
	engineOnce.Do(func() {
		cli, err := NewClient()
		if err != nil {
			engineErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
			cli.Close()
			engineErr = err
			return
		}
		engineCli = cli
	})
	if engineErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Docker engine reachable (CI=true): %v", engineErr)
		}
		t.Skipf("no Docker engine reachable, skipping (set DOCKER_HOST, or CI=true to fail): %v", engineErr)
	}
	return engineCli
}

// testImage builds the test image once per test binary.
func testImage(t testing.TB) string {
	t.Helper()
	cli := engine(t)
	imageOnce.Do(func() { imageErr = buildImage(cli) })
	if imageErr != nil {
		t.Fatalf("building the test image: %v", imageErr)
	}
	return imageRef
}

func buildImage(cli *client.Client) error {
	dir, err := os.MkdirTemp("", "scuttlebutt-testapp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "app")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./internal/testapp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	app, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	dockerfile := []byte(`FROM scratch
COPY app /app
EXPOSE 8080
HEALTHCHECK --interval=200ms --timeout=2s --retries=1 CMD ["/app", "health"]
ENTRYPOINT ["/app"]
`)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"app", 0o755, app}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{imageRef},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{runLabel: runID},
	})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Stream      string
			Error       string
			ErrorDetail struct{ Message string }
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if msg.Error != "" {
			return fmt.Errorf("image build: %s", msg.Error)
		}
	}
	imageMade = true
	return nil
}

func removeRunContainers(ctx context.Context, cli *client.Client) {
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", runLabel+"="+runID)})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
	}
}

// spec describes a test container.
type spec struct {
	labels  map[string]string
	publish bool     // publish 8080/tcp on a random host port of 127.0.0.1
	args    []string // arguments of /app
	restart container.RestartPolicyMode
	health  *container.HealthConfig // nil: the image's (200 ms interval, 1 retry)
	noStart bool
}

// startContainer creates (and starts) a container of the test image,
// labelled with this run's label, removed at the end of the test.
func startContainer(t testing.TB, s spec) string {
	t.Helper()
	return startContainers(t, s)[0]
}

// startContainers creates (and starts) containers concurrently, as
// startContainer: the engine takes a second or more to start one.
func startContainers(t testing.TB, specs ...spec) []string {
	t.Helper()
	cli := engine(t)
	img := testImage(t)
	ids := make([]string, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Go(func() { ids[i], errs[i] = createContainer(cli, img, s) })
	}
	wg.Wait()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, id := range ids {
			if id != "" {
				wg.Go(func() { cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}) })
			}
		}
		wg.Wait()
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// createContainer creates a container, and starts it unless s.noStart. It
// returns the ID of a container it created even when starting it failed.
func createContainer(cli *client.Client, img string, s spec) (string, error) {
	labels := map[string]string{runLabel: runID}
	for k, v := range s.labels {
		labels[k] = v
	}
	hc := &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: s.restart}}
	if s.publish {
		hc.PortBindings = network.PortMap{
			network.MustParsePort("8080/tcp"): {{HostPort: ""}},
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: img, Labels: labels, Cmd: s.args, Healthcheck: s.health},
		HostConfig: hc,
	})
	if err != nil {
		return "", fmt.Errorf("container create: %w", err)
	}
	if !s.noStart {
		if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			return res.ID, fmt.Errorf("container start: %w", err)
		}
	}
	return res.ID, nil
}

// hostPort returns the host port 8080/tcp of a running container is
// published on.
func hostPort(t testing.TB, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := engine(t).ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	for _, b := range res.Container.NetworkSettings.Ports[network.MustParsePort("8080/tcp")] {
		if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 {
			return p
		}
	}
	t.Fatalf("container %.12s has no published 8080/tcp", id)
	return 0
}

// post sends POST path to the test app of a container through its published
// port, retrying until it answers or the deadline passes.
func post(t testing.TB, id, path string) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", hostPort(t, id), path)
	var last error
	ok := poll(10*time.Second, func() bool {
		resp, err := http.Post(url, "text/plain", nil)
		if err != nil {
			last = err
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		t.Fatalf("POST %s: %v", url, last)
	}
}

// ready waits until the test app of each container answers through its
// published port: from then on it exits at once on SIGTERM, so `docker stop`
// is quick (PID 1 ignores SIGTERM until the app handles it, and the engine
// then waits 10 s before killing it).
func ready(t testing.TB, ids ...string) {
	t.Helper()
	for _, id := range ids {
		url := fmt.Sprintf("http://127.0.0.1:%d/", hostPort(t, id))
		var last error
		ok := poll(10*time.Second, func() bool {
			resp, err := http.Get(url)
			if err != nil {
				last = err
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if !ok {
			t.Fatalf("GET %s: %v", url, last)
		}
	}
}

// poll calls cond every 20 ms until it is true or the timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// eventually fails the test unless cond becomes true within timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// proxy is a unix-socket proxy of the engine's socket that a test can cut
// (the socket disappears and every open connection is closed) and restore.
type proxy struct {
	path, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t testing.TB) *proxy {
	t.Helper()
	target := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		u, ok := cutPrefix(h, "unix://")
		if !ok {
			t.Skipf("the unix-socket proxy needs a unix DOCKER_HOST, have %q", h)
		}
		target = u
	}
	dir, err := os.MkdirTemp("", "sbproxy")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{path: filepath.Join(dir, "docker.sock"), target: target, conns: map[net.Conn]struct{}{}}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
		os.RemoveAll(dir)
	})
	return p
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// Client returns a client of the engine through the proxy.
func (p *proxy) Client(t testing.TB) *client.Client {
	cli, err := client.New(client.WithHost("unix://" + p.path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Restore listens again.
func (p *proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		return err
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.serve(c)
		}
	}()
	return nil
}

func (p *proxy) serve(c net.Conn) {
	up, err := net.Dial("unix", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := func() {
		c.Close()
		up.Close()
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, up)
		p.mu.Unlock()
	}
	var once sync.Once
	p.wg.Add(2)
	go func() { defer p.wg.Done(); io.Copy(up, c); once.Do(done) }()
	go func() { defer p.wg.Done(); io.Copy(c, up); once.Do(done) }()
}

// Cut stops listening and closes every proxied connection.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

func TestEngineNegotiatesAPIVersion(t *testing.T) {
	cli := engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ping, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerList(ctx, client.ContainerListOptions{}); err != nil {
		t.Fatalf("list with API %s: %v", cli.ClientVersion(), err)
	}
	t.Logf("engine API %s, client speaks %s (client max %s, min %s)", ping.APIVersion, cli.ClientVersion(), client.MaxAPIVersion, client.MinAPIVersion)
}

// nopClient returns a client that is never used to reach an engine.
func nopClient(t testing.TB) *client.Client {
	cli, err := client.New(client.WithHost("unix:///nonexistent/docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
