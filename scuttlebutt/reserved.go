package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/docker"
	"github.com/scuttlebutt-go/scuttlebutt/lease"
)

// The keys the agent interprets belong to the agent's own writers: the KV
// API refuses them, so that a client of /v1/kv cannot forge what those
// writers would say (a lease request dated 1970 at the head of every
// queue, a role, a registration that nobody refreshes). Each has its own
// endpoint or flag.

// reservedKey is a key, or a prefix of keys, that the KV API refuses.
type reservedKey struct {
	prefix string // keys starting with it (exact: the key itself)
	exact  bool
	owner  string // who writes it, for the error message
}

// reservedKeys are the keys the agent interprets, with their writers.
// svc/<service>/<ID> (registrations) is checked apart: svc/ keys of the
// Docker adapter's format stay writable, as validated records.
var reservedKeys = []reservedKey{
	{prefix: scuttlebutt.ReservedPrefix, owner: "the library"},
	{prefix: decommissionPrefix, owner: "decommissions: use POST /v1/nodes/{id}/decommission (scuttlebutt decommission)"},
	{prefix: docker.MaintPrefix, owner: "maintenance: use PUT /v1/maintenance[/{id}] (scuttlebutt maint)"},
	{prefix: lease.Prefix, owner: "start-up leases: use POST /v1/leases/{label}/{id} (scuttlebutt acquire-lease)"},
	{prefix: roleKey, exact: true, owner: "the role choice (-registry with -servers)"},
	{prefix: bootstrapKey, exact: true, owner: "the role choice (-registry with -servers)"},
	{prefix: authKey, exact: true, owner: "the agent: it says that this node's API needs a token (-token)"},
}

// reservedOwner returns the writer of key if the KV API must refuse it.
func reservedOwner(key string) (string, bool) {
	for _, r := range reservedKeys {
		if r.exact && key == r.prefix || !r.exact && strings.HasPrefix(key, r.prefix) {
			return fmt.Sprintf("key %q is reserved for %s", key, r.owner), true
		}
	}
	if docker.IsRegistrationKey(key) {
		return fmt.Sprintf("key %q is a registration's (svc/<service>/<ID>): use PUT /v1/registrations/{service}/{id} (scuttlebutt watch); "+
			"records written through /v1/kv use the Docker adapter's key svc/<service>/<container>/<port>/<proto>", key), true
	}
	return "", false
}

// checkKeyPath refuses keys whose segments a path would not keep as they
// are: "." and "..", and empty segments ("//", a leading "/"). The HTTP
// mux would redirect such a path to its cleaned form, so that a write of
// a/../b would land on key b.
func checkKeyPath(key string) error {
	for i, seg := range strings.Split(key, "/") {
		switch {
		case seg == "." || seg == "..":
			return fmt.Errorf("key %q has a %q segment; keys are taken literally, not as paths: name the key without it", key, seg)
		case seg == "" && i > 0 && i < strings.Count(key, "/"):
			return fmt.Errorf("key %q has an empty segment (\"//\"); name the key without it", key)
		case seg == "" && i == 0 && key != "":
			return fmt.Errorf("key %q starts with a slash; name the key without it", key)
		}
	}
	return nil
}

// literalPaths answers 400 to a request whose path has "." or ".."
// segments or "//", instead of the mux's redirect to the cleaned path: a
// write must go to the key it names or nowhere.
func literalPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.Contains(p, "//") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") ||
			strings.Contains(p, "/./") || strings.Contains(p, "/../") {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("path %q has a \".\" or \"..\" segment or \"//\": paths are taken literally, "+
				"not cleaned; a key may not contain such segments", p))
			return
		}
		next.ServeHTTP(w, r)
	})
}
