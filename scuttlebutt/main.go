// Command scuttlebutt runs a node of a scuttlebutt gossip cluster with an
// HTTP API, a live web page and Prometheus metrics, and talks to one from
// the command line.
//
// Usage:
//
//	scuttlebutt agent [-join host:port] [-registry URL -servers N -exec CMD] [-http 127.0.0.1:7777] [-docker] ...
//	scuttlebutt demo [-nodes 5]
//	scuttlebutt members | services [name] | hosts -label NAME
//	scuttlebutt watch -label NAME -service-id ID -monitor-url URL
//	scuttlebutt acquire-lease|release-lease -label NAME -service-id ID
//	scuttlebutt kv get|set|delete|list ...
//	scuttlebutt decommission [-clear] ID
//	scuttlebutt maint -enable|-disable [-service-id ID] [-reason TEXT]
//	scuttlebutt keygen | keys list|install|use|remove
//	scuttlebutt registry list -registry URL
//	scuttlebutt bench-http ... | bench-dns ...
//
// Every agent flag may be given as an environment variable instead
// (SCUTTLEBUTT_<FLAG>, e.g. SCUTTLEBUTT_JOIN). See docs/daemon.md for the
// HTTP API, the CLI and its exit codes.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes, for scripts.
const (
	exitOK       = 0 // done; for hosts: at least one healthy host
	exitError    = 1 // the agent is unreachable, refused the request, or failed
	exitUsage    = 2 // bad command line
	exitNotFound = 3 // no such node, key or service; hosts: no healthy host
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `scuttlebutt: gossip-based membership and service discovery.

Usage:
  scuttlebutt agent [flags]            run a node (scuttlebutt agent -h for flags)
  scuttlebutt demo [-nodes 5]          run a small cluster on loopback with the web page

Talking to the local agent (-addr, SCUTTLEBUTT_ADDR; -token, SCUTTLEBUTT_TOKEN):
  scuttlebutt members                  list the nodes
  scuttlebutt services [name]          list services, or the instances of one
  scuttlebutt hosts -label NAME        comma-separated hosts where NAME is up and healthy
  scuttlebutt kv get KEY [-node ID]    print a key of this node (or of node ID)
  scuttlebutt kv set KEY VALUE         set a key of this node (VALUE "-": read stdin)
  scuttlebutt kv delete KEY            delete a key of this node
  scuttlebutt kv list [-node ID]       list the keys of this node (or of node ID)
  scuttlebutt decommission ID          make node ID leave the cluster and stay out
  scuttlebutt decommission -clear ID   let node ID back in
  scuttlebutt decommission -list       list decommissioned IDs
  scuttlebutt maint -enable|-disable [-service-id ID] [-reason TEXT]
                                       put this node's services (or one) in maintenance, or take them out

Health checks and start-up leases (as ServiceMonitor's; -h for flags):
  scuttlebutt watch -label NAME -service-id ID -monitor-url URL
                                       register a service and check it until stopped
  scuttlebutt acquire-lease -label NAME -service-id ID [-timeout 240s]
                                       wait for the start-up lease of NAME (exit 1 on timeout)
  scuttlebutt release-lease -label NAME -service-id ID
                                       release it before the service's health passes

Gossip encryption (docs/daemon.md, "Encryption"):
  scuttlebutt keygen                   print a new random key for -encrypt
  scuttlebutt keys list|install|use|remove [KEY|FINGERPRINT]
                                       change the agent's keyring (rotation)

Registry (docs/daemon.md, "Registry"; no agent needed):
  scuttlebutt registry list -registry URL
                                       the entries of a registry, live and expired

Load test:
  scuttlebutt bench-http [flags]       GET an endpoint as fast as possible; report req/s and latency
  scuttlebutt bench-dns [flags]        load the agent's DNS server; report queries/s and latency

Tabular commands take -json. Exit codes: 0 ok, 1 error (agent unreachable,
refused), 2 bad usage, 3 not found (or no healthy host).
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := &outputWriter{w: stdout}
	code := dispatch(args, stdin, out, stderr)
	if err := out.failed(); err != nil {
		fmt.Fprintf(stderr, "scuttlebutt: writing the output: %v\n", err)
		if code == exitOK {
			code = exitError
		}
	}
	return code
}

// dispatch runs the command of args.
func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "agent":
		return runAgent(rest, stderr)
	case "demo":
		return runDemo(rest, stdout, stderr)
	case "bench-http":
		return runBenchHTTP(rest, stdout, stderr)
	case "maint":
		return runMaint(rest, stdout, stderr)
	case "bench-dns":
		return runBenchDNS(rest, stdout, stderr)
	case "keygen":
		return runKeygen(rest, stdout, stderr)
	case "keys":
		return runKeys(rest, stdout, stderr)
	case "registry":
		return runRegistry(rest, stdout, stderr)
	case "members", "services", "hosts", "kv", "decommission":
		return runCLI(cmd, rest, stdin, stdout, stderr)
	case "watch":
		return runWatch(rest, stdout, stderr)
	case "acquire-lease", "release-lease":
		return runLease(cmd, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "scuttlebutt: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}
