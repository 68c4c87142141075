package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt/lease"
)

// This file holds `scuttlebutt acquire-lease` and `release-lease`,
// ServiceMonitor's commands. The agent holds the request (leases.go), so
// it outlives the command: acquire-lease returns once the lease is held,
// and the agent releases it later (the service's health passes, the
// maximum hold time, release-lease, or its node leaving or dying).

// leasePollWait is how long one long poll of acquire-lease waits.
const leasePollWait = 20 * time.Second

// leaseCmd is the command line of acquire-lease and release-lease.
type leaseCmd struct {
	label, serviceID string
	timeout          time.Duration
	holdUntilHealthy bool
	maxHold          time.Duration
	json             bool
}

func (l *leaseCmd) register(fs *flag.FlagSet, acquire bool) {
	fs.StringVar(&l.label, "label", "", "service `name` the lease is for")
	fs.StringVar(&l.serviceID, "service-id", "", "`ID` of the instance that takes the lease")
	fs.String("host-ip", "", "ignored: accepted for ServiceMonitor's command lines (the agent asked is -addr)")
	fs.BoolVar(&l.json, "json", false, "print the lease as JSON")
	if acquire {
		fs.DurationVar(&l.timeout, "timeout", 240*time.Second, "`time` to wait for the lease; then exit 1")
		fs.BoolVar(&l.holdUntilHealthy, "hold-until-healthy", true, "the agent releases the lease when this service ID's health check first passes (false: only at release-lease, at -max-hold, or when the node goes)")
		fs.DurationVar(&l.maxHold, "max-hold", defaultMaxHold, "`time` after which the agent releases the lease anyway (0: no limit)")
	}
}

func (l *leaseCmd) path() string {
	return "/v1/leases/" + url.PathEscape(l.label) + "/" + url.PathEscape(l.serviceID)
}

func leaseUsage(fs *flag.FlagSet, acquire bool) func() {
	return func() {
		if acquire {
			fmt.Fprint(fs.Output(), `Usage: scuttlebutt acquire-lease -label NAME -service-id ID [-timeout 240s] [flags]

Blocks until this service ID holds the start-up lease of NAME, then exits 0;
exits 1 if -timeout passes first (and withdraws the request). The agent holds
the lease after the command exits, until the service's health check first
passes (see -hold-until-healthy), -max-hold runs out, release-lease, or the
agent's node leaves or dies. As ServiceMonitor's acquire-lease.

Flags:
`)
		} else {
			fmt.Fprint(fs.Output(), `Usage: scuttlebutt release-lease -label NAME -service-id ID

Releases the start-up lease of NAME held (or requested) by this service ID
through this agent.

Flags:
`)
		}
		fs.PrintDefaults()
	}
}

// runLease is `scuttlebutt acquire-lease` and `release-lease`.
func runLease(name string, args []string, stdout, stderr io.Writer) int {
	acquire := name == "acquire-lease"
	c, fs := newAgentCLI(name, stdout, stderr)
	var l leaseCmd
	l.register(fs, acquire)
	fs.Usage = leaseUsage(fs, acquire)
	rest, err := parseFlags(fs, args, cliEnv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return c.usageErr("%v", err)
	}
	if len(rest) > 0 {
		return c.usageErr("unexpected argument %q; see scuttlebutt %s -h", rest[0], name)
	}
	switch {
	case l.label == "" || l.serviceID == "":
		return c.usageErr("want -label NAME and -service-id ID")
	case !lease.ValidName(l.label) || !lease.ValidName(l.serviceID):
		return c.usageErr("-label %q, -service-id %q: want 1 or more of A-Z a-z 0-9 . _ - (not . or ..)", l.label, l.serviceID)
	case acquire && l.timeout <= 0:
		return c.usageErr("-timeout %v: want a positive duration, such as 240s", l.timeout)
	case acquire && l.maxHold < 0:
		return c.usageErr("-max-hold %v: want a duration of zero (no limit) or more", l.maxHold)
	}
	c.json = l.json
	if !acquire {
		return c.releaseLease(l)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.acquireLease(ctx, l)
}

func (c *cli) releaseLease(l leaseCmd) int {
	var v leaseView
	raw, err := c.do("DELETE", l.path(), nil, nil, &v)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	fmt.Fprintf(c.stderr, "lease of %s released by %s\n", l.label, l.serviceID)
	return exitOK
}

// acquireLease requests the lease, then long-polls the agent until it is
// held or the timeout passes. A request the agent lost (it restarted) is
// made again; an unreachable agent is retried.
func (c *cli) acquireLease(ctx context.Context, l leaseCmd) int {
	start := time.Now()
	deadline := start.Add(l.timeout)
	tctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c.ctx = tctx
	body := leaseRequestBody{HoldUntilHealthy: &l.holdUntilHealthy, MaxHold: l.maxHold.String()}
	requested, warned := false, false
	var v leaseView
	var raw []byte
	var lastErr error // of the last attempt that did not reach the agent
	for tctx.Err() == nil {
		var err error
		if !requested {
			c.timeout = 10 * time.Second
			raw, err = c.do("POST", l.path(), nil, body, &v)
			requested = err == nil
		} else {
			// Not below zero: the deadline may pass between the loop's
			// check and here, and the agent refuses a negative wait.
			wait := max(min(leasePollWait, time.Until(deadline)), 0)
			c.timeout = wait + 10*time.Second
			raw, err = c.do("GET", l.path(), url.Values{"wait": {wait.Round(time.Millisecond).String()}}, nil, &v)
		}
		if err == nil {
			lastErr = nil
		}
		var ae *apiError
		var na *notAgentError
		switch {
		case tctx.Err() != nil:
		case errors.As(err, &na):
			return c.fail(err) // waiting will not make it an agent
		case errors.As(err, &ae) && ae.Code == http.StatusNotFound:
			fmt.Fprintf(c.stderr, "scuttlebutt acquire-lease: the agent lost the request (restarted?); requesting again\n")
			requested = false
		case errors.As(err, &ae):
			return c.fail(err) // refused: a token, a bad name
		case err != nil:
			lastErr = err
			if !warned {
				fmt.Fprintf(c.stderr, "scuttlebutt acquire-lease: %v; retrying until the timeout\n", err)
				warned = true
			}
			select {
			case <-tctx.Done():
			case <-time.After(time.Second):
			}
		case v.State == leaseHeld || v.HeldSince != nil:
			if c.json {
				return c.printJSON(raw)
			}
			fmt.Fprintf(c.stderr, "lease of %s held by %s after %v\n", l.label, l.serviceID, time.Since(start).Round(time.Millisecond))
			return exitOK
		case v.State == leaseReleased:
			fmt.Fprintf(c.stderr, "scuttlebutt acquire-lease: the agent withdrew the request (%s); requesting again\n", v.EndReason)
			requested = false
		}
	}
	// Timed out or stopped: withdraw the request, so that it does not
	// block the queue.
	c.ctx, c.timeout = context.Background(), 5*time.Second
	c.do("DELETE", l.path(), nil, nil, nil)
	why := fmt.Sprintf("timed out after %v waiting for the lease of %s", l.timeout, l.label)
	if ctx.Err() != nil {
		why = "stopped by a signal while waiting for the lease of " + l.label
	}
	if lastErr != nil {
		why += "; the agent was unreachable: " + lastErr.Error()
	}
	if len(v.Queue) > 0 {
		var ahead []string
		for _, e := range v.Queue {
			if e.ServiceID == l.serviceID && e.Node == v.Node {
				break
			}
			ahead = append(ahead, e.ServiceID+"@"+e.Node)
		}
		if len(ahead) > 0 {
			why += fmt.Sprintf("; ahead of %s: %s", l.serviceID, strings.Join(ahead, ", "))
		} else {
			why += fmt.Sprintf("; %s was first, but not every live node acknowledged it yet", l.serviceID)
		}
	}
	if requested {
		why += "; request withdrawn"
	}
	fmt.Fprintf(c.stderr, "scuttlebutt acquire-lease: %s\n", why)
	if c.json && v.Label != "" {
		b, _ := json.Marshal(v)
		c.printJSON(b)
	}
	return exitError
}
