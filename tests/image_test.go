package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool skips t (or fails it under CI=true) unless the command runs.
func needTool(t *testing.T, what string, name string, args ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("container test: skipped with -short")
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s unavailable (%s %s: %v): %s", what, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI=true: %s", msg)
	}
	t.Skip(msg)
}

// docker runs the docker CLI and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildImage builds the repository's Dockerfile around the static binary,
// as `make image` does, under a tag of this test run; removed at cleanup.
func buildImage(t *testing.T) string {
	t.Helper()
	ctx := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ctx, "build"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{
		{agentBinary(t), filepath.Join(ctx, "build", "scuttlebutt")},
		{"../Dockerfile", filepath.Join(ctx, "Dockerfile")},
		{"../.dockerignore", filepath.Join(ctx, ".dockerignore")},
	} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tag := fmt.Sprintf("scuttlebutt:test-%d", os.Getpid())
	docker(t, "build", "-q", "-t", tag, ctx)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	return tag
}

// httpGetJSON gets url and decodes its JSON into v.
func httpGetJSON(url string, v any) error {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

// allAlive reports whether the agent whose API is at base sees exactly
// want, all alive.
func allAlive(base string, want ...string) bool {
	var out struct{ Nodes []struct{ ID, Status string } }
	if httpGetJSON(base+"/v1/nodes", &out) != nil || len(out.Nodes) != len(want) {
		return false
	}
	for _, n := range out.Nodes {
		if n.Status != "alive" || !strings.Contains(" "+strings.Join(want, " ")+" ", " "+n.ID+" ") {
			return false
		}
	}
	return true
}

// The image: FROM scratch, runs as nobody, the binary as entry point;
// three containers on a user-defined bridge network, joining by name,
// converge, and a key written through one is read through another.
func TestImage(t *testing.T) {
	needTool(t, "Docker", "docker", "version")
	image := buildImage(t)
	if user := docker(t, "image", "inspect", "-f", "{{.Config.User}}", image); user != "65534:65534" {
		t.Errorf("image user %q, want 65534:65534 (non-root)", user)
	}
	if ep := docker(t, "image", "inspect", "-f", "{{json .Config.Entrypoint}}", image); ep != `["/scuttlebutt"]` {
		t.Errorf("entry point %s, want the binary", ep)
	}
	if out, err := exec.Command("docker", "run", "--rm", image, "agent", "-config", "moon").CombinedOutput(); err == nil || !strings.Contains(string(out), "-config") {
		t.Errorf("docker run %s agent -config moon: want a usage error naming -config, got %v: %s", image, err, out)
	}

	name := fmt.Sprintf("sbtest-%d", os.Getpid())
	docker(t, "network", "create", "--driver", "bridge", name)
	t.Cleanup(func() { exec.Command("docker", "network", "rm", name).Run() })
	var ids, bases []string
	for i := 1; i <= 3; i++ {
		c := fmt.Sprintf("%s-%d", name, i)
		ids = append(ids, c)
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := exec.Command("docker", "logs", c).CombinedOutput()
				t.Logf("logs of %s:\n%s", c, out)
			}
			exec.Command("docker", "rm", "-f", c).Run()
		})
		docker(t, "run", "-d", "--name", c, "--network", name, "-p", "127.0.0.1::7777",
			"-e", "SCUTTLEBUTT_ID="+c, "-e", "SCUTTLEBUTT_TOKEN=tok",
			image, "agent", "-join", name+"-1,"+name+"-2", "-config", "local")
		hostPort := docker(t, "port", c, "7777/tcp")
		if _, _, err := net.SplitHostPort(strings.Split(hostPort, "\n")[0]); err != nil {
			t.Fatalf("docker port %s: %q", c, hostPort)
		}
		bases = append(bases, "http://"+strings.Split(hostPort, "\n")[0])
	}
	t0 := time.Now()
	for _, b := range bases {
		waitFor(t, 30*time.Second, b+" to see three containers alive", func() bool { return allAlive(b, ids...) })
	}
	t.Logf("three containers converged in %v", time.Since(t0).Round(time.Millisecond))

	req, _ := http.NewRequest("PUT", bases[0]+"/v1/kv/color", strings.NewReader("blue"))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT with the token: %d", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "the key on the third container", func() bool {
		var kv struct{ Value string }
		return httpGetJSON(bases[2]+"/v1/kv/color?node="+ids[0], &kv) == nil && kv.Value == "blue"
	})
}

// The image with -docker: the engine's socket mounted read-only, the
// socket's group added to the non-root user; the agent publishes a
// labelled container's published port as a service.
func TestImageDocker(t *testing.T) {
	needTool(t, "Docker", "docker", "version")
	const sock = "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" && h != "unix://"+sock {
		t.Skipf("the engine is at DOCKER_HOST=%s, not %s: nothing to mount", h, sock)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatalf("docker works but %s: %v", sock, err)
	}
	image := buildImage(t)
	name := fmt.Sprintf("sbtest-%d-docker", os.Getpid())
	label := fmt.Sprintf("scuttlebutt.test=%d", os.Getpid())
	for _, c := range []string{name, name + "-svc"} {
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := exec.Command("docker", "logs", c).CombinedOutput()
				t.Logf("logs of %s:\n%s", c, out)
			}
			exec.Command("docker", "rm", "-f", c).Run()
		})
	}
	docker(t, "run", "-d", "--name", name, "-p", "127.0.0.1::7777",
		"-v", sock+":"+sock+":ro", "--group-add", fmt.Sprint(st.Gid),
		image, "agent", "-id", "docker-host", "-docker", "-docker-label", label, "-config", "local")
	// Any container with a published port will do as a service: another
	// agent of the same image.
	docker(t, "run", "-d", "--name", name+"-svc", "-p", "127.0.0.1::7777",
		"--label", label, "--label", "scuttlebutt.service=probe", image, "agent")
	base := "http://" + strings.Split(docker(t, "port", name, "7777/tcp"), "\n")[0]
	waitFor(t, 30*time.Second, "the -docker agent to publish the labelled container", func() bool {
		var out struct {
			Instances []struct{ Service, Container string }
		}
		return httpGetJSON(base+"/v1/services/probe", &out) == nil && len(out.Instances) == 1
	})
	if logs, _ := exec.Command("docker", "logs", name).CombinedOutput(); strings.Contains(string(logs), "permission denied") {
		t.Fatalf("the agent could not read the socket:\n%s", logs)
	}
}
