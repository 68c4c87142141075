package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
)

// HTTP checks a URL with GET: any 2xx answer is passing, anything else, or
// no answer within the timeout, failing (ServiceMonitor's monitor-url).
type HTTP struct {
	URL string
	// Client sends the request. Nil: a client that does not follow
	// redirects (a 3xx is not healthy) and keeps no connection open
	// between checks.
	Client *http.Client
}

var defaultHTTPClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// Check sends the GET; the output is the status line and the start of
// the body.
func (h HTTP) Check(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %w", h.URL, err)
	}
	req.Header.Set("User-Agent", "scuttlebutt-health-check")
	c := h.Client
	if c == nil {
		c = defaultHTTPClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOutput))
	out := resp.Status
	if b := strings.TrimSpace(string(bytes.ToValidUTF8(body, nil))); b != "" {
		out += ": " + b
	}
	if resp.StatusCode/100 != 2 {
		return out, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return out, nil
}

// TCP checks that a TCP connection to Addr ("host:port") opens.
type TCP struct {
	Addr string
}

// Check dials and closes.
func (t TCP) Check(ctx context.Context) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return "", err
	}
	c.Close()
	return "connected to " + t.Addr, nil
}

// Command checks that a command exits with status 0. Its combined output
// (the start of it) is the check's output. It is killed when the check
// times out.
type Command struct {
	Path string
	Args []string
}

// Check runs the command.
func (c Command) Check(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	output := strings.TrimSpace(string(bytes.ToValidUTF8(out.b.Bytes(), nil)))
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return output, fmt.Errorf("exit status %d", exit.ExitCode())
	}
	return output, err
}

// limitedBuffer keeps the first MaxOutput bytes written to it and
// discards the rest, so a chatty command cannot fill memory.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := MaxOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
