// Package docker publishes the services of the containers running on a
// Docker host as keys of a scuttlebutt node, and finds them again across
// the cluster.
//
// An Adapter keeps the node's service keys equal to the host's running
// container services until the context given to Run ends, then withdraws
// them. Every node on a Docker host runs one; any node can query the
// cluster with Services and Instances.
//
//	a, err := docker.New(node, nil, docker.Options{}) // nil: a client from the environment
//	if err != nil { ... }
//	go a.Run(ctx) // until ctx ends; then it withdraws its services
//	...
//	for _, in := range docker.Instances(node, "web", true) { // on any node
//		fmt.Println(in.Addr(), in.Health)
//	}
//
// A program that is not a container publishes itself, with the verdict of
// its own health check, through Watch (or Publication, to run the checks
// itself); `scuttlebutt watch` does the same through an agent:
//
//	go docker.Watch(ctx, node, docker.Registration{Service: "web", ID: "web-1", Host: "10.0.0.7", Port: 8080},
//		health.HTTP{URL: "http://10.0.0.7:8080/health"}, health.Config{Interval: 5 * time.Second},
//		docker.PublishOptions{}, nil)
//
// The client is github.com/moby/moby/client, made with
// client.New(client.FromEnv) (DOCKER_HOST and friends), negotiating the API
// version (1.40 and later).
//
// # What is published
//
// By default (the registrator convention) every running container with at
// least one published port is published, one key per published port, unless
// it carries scuttlebutt.ignore=true. With Options.Explicit only containers
// that opt in with a scuttlebutt.service or scuttlebutt.port.<port>.name
// label are. With Options.UseContainerAddr (overlay and other routable
// container networks) the container's own address and its exposed ports
// are published instead of host ports. A container that is not running, or
// that is restarting, has no keys; a paused one keeps them with state
// "paused".
//
// # Labels
//
// The prefix "scuttlebutt" is Options.LabelPrefix.
//
//	scuttlebutt.service=<name>          service name. Default: the image name
//	                                    without registry, path, tag or digest;
//	                                    with several ports, "-<port>" is appended
//	scuttlebutt.port.<port>.name=<name> service name of one private port
//	scuttlebutt.port.<port>.ignore=true do not publish that port
//	scuttlebutt.tags=a,b                tags copied into the records
//	scuttlebutt.export=<label>,<label>  labels copied into the records
//	scuttlebutt.ignore=true             do not publish the container
//	scuttlebutt.maintenance=<reason>    start in maintenance (see MaintPrefix):
//	                                    visible, never healthy
//
// Health checks the adapter runs itself, against the container's published
// address (with UseContainerAddr: its own address and private port):
//
//	scuttlebutt.check.http=/health      GET http://<address>/health; any 2xx passes
//	scuttlebutt.check.tcp=true          a TCP connect to the address
//	scuttlebutt.check.port=8080         the private port whose address is checked
//	                                    (default: the lowest published TCP port)
//	scuttlebutt.check.interval=5s       between checks (default 5s)
//	scuttlebutt.check.timeout=2s        of one check (default: the interval, at most 10s)
//	scuttlebutt.check.rise=1            successes in a row that make it passing (default 1)
//	scuttlebutt.check.fall=2            failures in a row that make it failing (default 2)
//	scuttlebutt.check.ttl=30s           of its records (default 30s, at least 3 intervals)
//
// The verdict, starting until the first check, goes into every record of
// the container (see below). Bad check labels are logged and make the
// records failing, with the reason as the check's output.
//
// Service names are reduced to [A-Za-z0-9._-] (other bytes become '-') and
// at most 64 bytes.
//
// # Keys and records
//
// One key per service instance, that is per container and private port:
//
//	svc/<service>/<container id, 12 hex digits>/<private port>/<proto>
//	svc/web/4f3c2a1b9e8d/8080/tcp
//
// Its value is a compact JSON Record, version 1:
//
//	{"v":1,"svc":"web","cid":"4f3c2a1b9e8d","name":"web-1","img":"acme/web:1.2",
//	 "host":"10.0.0.7","port":32768,"priv":8080,"proto":"tcp","tags":["a"],
//	 "labels":{"team":"blue"},"health":"healthy","state":"running","started":1767225600}
//
// health is none (no health check), starting, healthy or unhealthy; state is
// running, paused or unknown (daemon unreachable, see below);
// started is the container's last start, in Unix seconds. A record without
// a check holds nothing volatile, so keys change only when a container
// does: a resync that finds nothing new writes nothing. Records are kept
// under Options.MaxValueSize (888 bytes, the value limit of a node with the
// default 1400-byte packets) by trimming a check's output, then dropping
// exported labels, then tags.
//
// A record of a container with check labels, or of a service registered by
// a program (`scuttlebutt watch`, Watch), also has
//
//	"check":{"status":"failing","at":1767225600123,"out":"HTTP 500: 500 Internal Server Error"},
//	"exp":1767225630123
//
// check.status is passing, failing, starting, or expired (CheckExpired:
// written by the publisher when its checker stopped reporting for a TTL);
// check.at the time of the last check (Unix ms, the publisher's clock) and
// check.out its output, as of the record's last write; exp the time of the
// write plus the TTL (Unix ms, the publisher's clock), for readers of
// earlier versions: readers of this one never compare it with their own
// clock. health then combines Docker's health with the check's (the worse
// of the two), so that older readers, which know only health, still leave
// a failing instance out. The record is rewritten when the verdict changes
// and when a third of the TTL has passed (on the monotonic clock), not at
// every check: an instance whose watcher stopped (a watcher killed: its
// agent withdraws it; a Watch whose checks stopped: marked expired) stops
// counting as healthy on every node within its TTL plus the spread, while
// checks that change nothing cost the cluster no traffic. A registered service has
// the key svc/<service>/<service ID>, name = the service ID, no container,
// and may carry "info", free-form JSON of its publisher.
//
// # How it stays correct
//
// Docker drops events for subscribers slower than about 100 ms and keeps
// only the last 256, and its event stream ends on any error. So Run
// subscribes to container events first and then reconciles against a full
// list of the running containers: records are added and updated, and keys
// that no container backs any more, including those an earlier run left
// behind (found with State(ID())), are deleted. Events only mark container
// IDs dirty in a coalescing set; another goroutine inspects the dirty
// containers every Options.Coalesce (100 ms). A full reconcile also runs
// every Options.Resync (30 s) and after every resubscription. An event
// stream that ends is resubscribed with backoff (100 ms doubling to 5 s).
// While the daemon is unreachable (a reconcile's list or inspect fails: when the
// event stream ends or at the periodic reconcile) the records are rewritten
// with state "unknown" (unless Options.NoMarkUnknown), kept for
// Options.Grace (1 minute), then withdrawn; the reconcile that follows the
// daemon's return publishes them again as they are. When Run's context
// ends, every record is withdrawn.
//
// # Queries
//
// Services and Instances read, on any node, the records of every node whose
// status is alive there, decoded with DecodeRecord; records that do not
// decode (another version) are skipped. Instances are ordered healthy
// first: healthy (or passing), no health check, starting, unhealthy (or
// failing, or expired), then those not running (paused, unknown); with
// onlyHealthy, only the Healthy ones: running, whose Docker health check
// and own check pass or that have none, and not expired. Records written by
// older versions, without check or exp, read as before.
//
// # Crashes and the failure detector
//
// A node that stops cleanly should first end its adapter's context and wait
// for Run to return: the deletes spread as tombstones within a few gossip
// rounds. Then Node.Leave: peers mark it left and queries drop whatever it
// still published at once.
//
// A node that crashes (or is cut off) withdraws nothing: its peers keep its
// last records, readable with State, until Config.RemoveAfter. Queries
// leave them out as soon as the failure detector declares the node dead,
// after about 18 mean heartbeat intervals of silence with the default phi
// threshold of 8: about 2 s with DefaultLocalConfig (100 ms rounds), 4 s with
// DefaultLANConfig. Until then they are listed, with the health they had. A
// node that comes back under the same ID has a new generation and none of
// its old keys, so its old records vanish everywhere; its adapter publishes
// the containers still running at its first reconcile. An adapter restarted
// on a node that kept running adopts the keys its earlier run left
// (State(ID())), keeps those still true and deletes the others.
package docker
