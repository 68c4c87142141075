// Package registry lets nodes that start with no address to join find
// each other, and choose their roles, through a shared store of heartbeats:
// auto-consul's registry, without its race.
//
// # Stores
//
// Open takes a URL:
//
//	s3://BUCKET/PREFIX   S3 and S3-compatible stores (MinIO, ...), see S3
//	file:///PATH         a directory on a shared filesystem, see File
//	dns://NAME[:PORT]    read-only seeds from A/AAAA records, see DNS
//	dns+srv://NAME       read-only seeds from SRV records
//
// Registry is the interface of a store; Register adds a scheme for a store
// of your own (a Consul catalog, etcd, a cloud API).
//
// # Layout
//
// Under its prefix a registry holds, as the seed did:
//
//	agents/<ID>.json     every node's heartbeat, rewritten every expiry/2
//	servers/<slot>.json  the claim of server slot 0, 1, ... (File: a directory of versions)
//
// Each is a JSON Entry: {"id", "addr", "role", "bootstrap", "time",
// "released"}. An entry is live while it is younger than the expiry
// (DefaultExpiry, 120 s), its age measured on one clock, the store's (see
// Entry.Age): S3's Date of the answer against the object's Last-Modified;
// a file's mtime against that of a probe file written now in the same
// directory. The "time" in the entry, by its writer's clock, is shown and
// never compared with another clock. Purge deletes expired heartbeats. IDs
// are path-escaped in names.
//
// # Finding peers
//
// A node writes its heartbeat, lists the registry, and tries the addresses
// of the live entries (JoinAddrs: servers first, then the others) one after
// the other until a join succeeds. Once joined, gossip is the source of
// truth; the registry is only for the first peer.
//
// # Roles
//
// Choose gives a node a role when the cluster wants N servers: it claims
// server slots 0..N-1 with exclusive conditional writes (S3: If-None-Match
// and If-Match; File: link(2) of the next version), so that at most N nodes
// are servers and at most one, the holder of slot 0 that saw no other
// server, bootstraps. A server renews its slot every expiry/2; a dead
// server's slot is taken over by a later node once it expires.
//
// What is guaranteed: claims are exclusive as long as the store's
// conditional writes are (S3 and POSIX link are), and liveness does not
// depend on the nodes' clocks agreeing with each other or with the
// store's. What is not: a server paused for longer than the expiry may
// find its slot taken when it renews (Renew returns ErrTaken) while it
// still acts as a server until it notices.
package registry
