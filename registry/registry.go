package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Roles a node may take when the cluster wants servers (see Choose).
const (
	RoleServer = "server" // holds a server slot
	RoleAgent  = "agent"  // found enough servers
)

// DefaultExpiry is the age at which an entry stops counting as live, as the
// seed's (auto-consul): heartbeats are written every half of it.
const DefaultExpiry = 120 * time.Second

// The layout of a registry under its prefix (docs/daemon.md, "Registry").
const (
	AgentsDir  = "agents/"  // one heartbeat per node: agents/<escaped ID>.json
	ServersDir = "servers/" // one claim per server slot: servers/<slot>.json (file stores: a directory of versions)
)

// MaxEntrySize bounds an entry as stored; larger ones do not parse.
const MaxEntrySize = 4 << 10

var (
	// ErrTaken is returned by Claim and Release when another live node
	// holds the slot, or when the slot changed under a conditional write.
	ErrTaken = errors.New("registry: the slot is held by another node")
	// ErrUnsupported is returned by stores that cannot do an operation:
	// DNS seeds cannot be written, and cannot hold server slots.
	ErrUnsupported = errors.New("registry: not supported by this store")
	// ErrBadEntry is wrapped by the error List returns along with the
	// entries that parse when some do not (see *EntryError).
	ErrBadEntry = errors.New("registry: entry does not parse")
)

// EntryError is an entry of the store that does not parse. List skips it
// and returns it, joined with the others, next to the good entries.
type EntryError struct {
	Key string // where it is stored, relative to the registry
	Err error  // what is wrong with it
}

// Error names the entry and what to do about it.
func (e *EntryError) Error() string {
	return fmt.Sprintf("registry entry %s does not parse and is skipped (%v); delete it, or check what writes it", e.Key, e.Err)
}

// Unwrap returns the cause.
func (e *EntryError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrBadEntry) true.
func (e *EntryError) Is(target error) bool { return target == ErrBadEntry }

// Entry is one node in the registry: its heartbeat, or its claim on a
// server slot. The stored fields are written by the node itself.
type Entry struct {
	ID        string    `json:"id"`                  // the node's ID
	Addr      string    `json:"addr"`                // host:port to join the node through (its gossip address)
	Role      string    `json:"role,omitempty"`      // RoleServer, RoleAgent, or "" when the cluster has no roles
	Bootstrap bool      `json:"bootstrap,omitempty"` // the server that bootstrapped the cluster
	Time      time.Time `json:"time"`                // when it was written, by the node's clock: shown, never compared with another clock when Aged
	Released  bool      `json:"released,omitempty"`  // a slot its holder gave up: free at once

	// Set by List, not stored.
	Slot int    `json:"-"` // the server slot this entry claims, or -1 for a heartbeat
	Key  string `json:"-"` // where it is stored, relative to the registry: agents/ID.json, servers/0.json
	// Age is how long ago the store wrote the entry, by the store's own
	// clock (S3: the Date of the answer less the object's Last-Modified;
	// a directory: the mtime of a probe file written now less the
	// entry's), when Aged. Set by List and the reads of Claim, not stored.
	Age  time.Duration `json:"-"`
	Aged bool          `json:"-"`
}

// Live tells whether the entry counts: not released, and younger than
// expiry. Its age is the store's (Age) when the store told it, so no
// two hosts' clocks are compared; else (an entry not read from a store,
// or a store that could not tell) the time since Time at now.
func (e Entry) Live(now time.Time, expiry time.Duration) bool {
	if e.Released {
		return false
	}
	if e.Aged {
		return e.Age < expiry
	}
	return now.Sub(e.Time) < expiry
}

// aged sets an entry's age from two times of the store's clock: when it
// stored the entry, and now.
func (e *Entry) aged(stored, now time.Time) {
	if stored.IsZero() || now.IsZero() {
		return
	}
	e.Age, e.Aged = max(0, now.Sub(stored)), true
}

// IsSlot tells whether the entry is a claim on a server slot.
func (e Entry) IsSlot() bool { return e.Slot >= 0 }

// Registry is a store of entries: the heartbeats nodes use to find each
// other, and the server slots they claim to choose their roles. Stores that
// cannot do an operation return ErrUnsupported. Methods may be called from
// several goroutines.
//
// Open returns one for a URL; Register adds schemes.
type Registry interface {
	// Put writes e as the heartbeat of node e.ID, replacing the previous
	// one atomically: readers see the old entry or the new, never a part.
	Put(ctx context.Context, e Entry) error
	// List returns the heartbeats and the server slots, live or expired,
	// the slots first by number, then the heartbeats by ID. When some
	// entries do not parse, it returns the others along with an error
	// wrapping ErrBadEntry (one *EntryError each); any other error means
	// the store could not be read.
	List(ctx context.Context) ([]Entry, error)
	// Delete removes the heartbeat of node e.ID; an absent one is no error.
	Delete(ctx context.Context, e Entry) error
	// Claim makes e the holder of server slot slot, exclusively: it
	// succeeds if the slot is free, released, unparseable, held by an entry
	// older than expiry at e.Time, or held by e.ID already (a renewal).
	// Otherwise, or if another write won the race for the slot, it returns
	// ErrTaken. Two Claims never both succeed on a slot for different IDs
	// unless the first holder's entry expired in between.
	Claim(ctx context.Context, slot int, e Entry, expiry time.Duration) error
	// Release gives up slot if e.ID holds it, so that the next claimer
	// need not wait for it to expire. It returns ErrTaken if another node
	// holds it (live or expired: it is not e.ID's), and nil if the slot is
	// free.
	Release(ctx context.Context, slot int, e Entry) error
}

// encodeEntry is the stored form of an entry.
func encodeEntry(e Entry) ([]byte, error) {
	if err := checkEntry(e); err != nil {
		return nil, err
	}
	e.Time = e.Time.UTC()
	return json.Marshal(e)
}

// decodeEntry parses a stored entry; key says where it was found.
func decodeEntry(key string, b []byte) (Entry, error) {
	bad := func(format string, args ...any) (Entry, error) {
		return Entry{}, &EntryError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	if len(b) > MaxEntrySize {
		return bad("%d bytes, more than the %d of an entry", len(b), MaxEntrySize)
	}
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return bad("not an entry's JSON: %v", err)
	}
	if err := checkEntry(e); err != nil {
		return bad("%v", err)
	}
	e.Key = key
	e.Slot = -1
	return e, nil
}

// checkEntry checks what a node writes.
func checkEntry(e Entry) error {
	switch {
	case e.ID == "":
		return errors.New("no id")
	case len(e.ID) > scuttlebutt.MaxIDSize:
		return fmt.Errorf("the id is %d bytes, more than %d", len(e.ID), scuttlebutt.MaxIDSize)
	case e.Time.IsZero():
		return errors.New("no time")
	case e.Role != "" && e.Role != RoleServer && e.Role != RoleAgent:
		return fmt.Errorf("role %q: want %q, %q or none", e.Role, RoleServer, RoleAgent)
	}
	if e.Addr == "" && e.Released {
		return nil
	}
	host, port, err := net.SplitHostPort(e.Addr)
	if err != nil || host == "" {
		return fmt.Errorf("addr %q: want host:port", e.Addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("addr %q: the port is not a number from 1 to 65535", e.Addr)
	}
	return nil
}

// heartbeatName is the name of node id's heartbeat under AgentsDir: the
// ID path-escaped, a leading dot too (names starting with a dot are
// temporary files).
func heartbeatName(id string) string {
	name := url.PathEscape(id)
	if strings.HasPrefix(name, ".") {
		name = "%2E" + name[1:]
	}
	return name + ".json"
}

// idOfHeartbeat is the inverse of heartbeatName.
func idOfHeartbeat(name string) (string, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return "", false
	}
	id, err := url.PathUnescape(base)
	return id, err == nil && id != ""
}

// sortEntries orders entries as List returns them.
func sortEntries(es []Entry) {
	slices.SortStableFunc(es, func(a, b Entry) int {
		switch {
		case a.IsSlot() && b.IsSlot():
			return a.Slot - b.Slot
		case a.IsSlot():
			return -1
		case b.IsSlot():
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// holderLive tells whether cur (nil: no parseable entry) keeps the slot
// from claimer e.
func holderLive(cur *Entry, e Entry, expiry time.Duration) bool {
	return cur != nil && cur.ID != e.ID && cur.Live(e.Time, expiry)
}

// claimable decides a claim of a slot by e, given its current entry: taken
// while another node's entry there is live.
func claimable(e Entry, expiry time.Duration) func(cur *Entry) (bool, error) {
	return func(cur *Entry) (bool, error) {
		if holderLive(cur, e, expiry) {
			return false, ErrTaken
		}
		return true, nil
	}
}

// releasable decides a release of a slot by e: nothing to do if it is free
// or released, refused if another node holds it.
func releasable(e Entry) func(cur *Entry) (bool, error) {
	return func(cur *Entry) (bool, error) {
		switch {
		case cur == nil || cur.Released:
			return false, nil
		case cur.ID != e.ID:
			return false, ErrTaken
		}
		return true, nil
	}
}

// claimAttempts bounds the reads and conditional writes of one Claim: a
// conflict means another node wrote the slot at the same moment; it is
// read again in case that was a release.
const claimAttempts = 3

// JoinAddrs returns the addresses of the live entries other than node
// self's, each once: the servers by slot first, then the heartbeats by ID
// (the order of List). A joiner tries them one after the other.
func JoinAddrs(entries []Entry, self string, now time.Time, expiry time.Duration) []string {
	var out []string
	for _, e := range entries {
		if e.ID == self || e.Addr == "" || !e.Live(now, expiry) || slices.Contains(out, e.Addr) {
			continue
		}
		out = append(out, e.Addr)
	}
	return out
}

// Servers returns the live holders of server slots other than node self,
// by slot.
func Servers(entries []Entry, self string, now time.Time, expiry time.Duration) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.IsSlot() && e.ID != self && e.Live(now, expiry) {
			out = append(out, e)
		}
	}
	return out
}

// Purge deletes the expired heartbeats among entries (as List returned
// them) and returns how many it deleted. Slots are not purged: their number
// is bounded, and they are taken over by Claim.
func Purge(ctx context.Context, r Registry, entries []Entry, now time.Time, expiry time.Duration) (int, error) {
	n := 0
	var errs []error
	for _, e := range entries {
		if e.IsSlot() || e.Live(now, expiry) {
			continue
		}
		if err := r.Delete(ctx, e); err != nil {
			if errors.Is(err, ErrUnsupported) {
				return n, nil
			}
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
