package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt/registry"
)

// registryEntryJSON is an entry as `scuttlebutt registry list -json`
// prints it.
type registryEntryJSON struct {
	Key       string    `json:"key"`
	Slot      *int      `json:"slot,omitempty"` // the server slot; absent for a heartbeat
	ID        string    `json:"id"`
	Addr      string    `json:"addr"`
	Role      string    `json:"role,omitempty"`
	Bootstrap bool      `json:"bootstrap,omitempty"`
	Time      time.Time `json:"time"`
	Released  bool      `json:"released,omitempty"`
	State     string    `json:"state"` // live, expired or released

	written time.Time // shown: now less the store's age of the entry when it told it, else Time
}

// runRegistry is `scuttlebutt registry list`: the entries of a registry,
// live and expired, read from the store itself (no agent needed).
func runRegistry(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" {
		fmt.Fprintln(stderr, "scuttlebutt registry: want list; e.g. scuttlebutt registry list -registry s3://bucket/prefix")
		return exitUsage
	}
	fs := flag.NewFlagSet("registry list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("registry", "", "`URL` of the registry (env SCUTTLEBUTT_REGISTRY)")
	expiry := fs.Duration("registry-expiry", registry.DefaultExpiry, "`age` at which an entry expires (env SCUTTLEBUTT_REGISTRY_EXPIRY)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", 30*time.Second, "`time` to wait for the store")
	env := func(k string) string {
		switch k {
		case envPrefix + "REGISTRY", envPrefix + "REGISTRY_EXPIRY":
			return os.Getenv(k)
		}
		return ""
	}
	pos, err := parseFlags(fs, args[1:], env)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "scuttlebutt registry list: "+format+"\n", a...)
		return code
	}
	switch {
	case err != nil:
		return fail(exitUsage, "%v", err)
	case len(pos) > 0:
		return fail(exitUsage, "takes no arguments")
	case *url == "":
		return fail(exitUsage, "want -registry URL (or SCUTTLEBUTT_REGISTRY)")
	case *expiry < time.Second:
		return fail(exitUsage, "-registry-expiry %s: want at least 1s", *expiry)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	reg, err := registry.Open(ctx, *url)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	entries, err := reg.List(ctx)
	if err != nil && !errors.Is(err, registry.ErrBadEntry) {
		return fail(exitError, "%v", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "scuttlebutt registry list: warning: %v\n", err)
	}
	now := time.Now()
	out := make([]registryEntryJSON, 0, len(entries))
	for _, e := range entries {
		j := registryEntryJSON{Key: e.Key, ID: e.ID, Addr: e.Addr, Role: e.Role, Bootstrap: e.Bootstrap,
			Time: e.Time, Released: e.Released, State: "live", written: e.Time}
		if e.Aged {
			j.written = now.Add(-e.Age)
		}
		if e.IsSlot() {
			j.Slot = &e.Slot
		}
		switch {
		case e.Released:
			j.State = "released"
		case !e.Live(now, *expiry):
			j.State = "expired"
		}
		out = append(out, j)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(map[string]any{"registry": *url, "expiry": expiry.String(), "entries": out}, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tSLOT\tID\tADDRESS\tROLE\tWRITTEN\tSTATE")
	for _, e := range out {
		slot := "-"
		if e.Slot != nil {
			slot = strconv.Itoa(*e.Slot)
		}
		role := roleText(e.Role, e.Bootstrap)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Key, slot, e.ID, e.Addr, role, ago(now, e.written, false), e.State)
	}
	tw.Flush()
	return exitOK
}

// roleText shows a role in a table: "-" for none.
func roleText(role string, bootstrap bool) string {
	switch {
	case role == "":
		return "-"
	case bootstrap:
		return role + " (bootstrap)"
	}
	return role
}
