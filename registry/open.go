package registry

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// OpenFunc opens a registry of one URL scheme. It checks the URL and builds
// the client; it should not reach the store, so that a store that is down
// at start is retried by the caller rather than refused.
type OpenFunc func(ctx context.Context, u *url.URL) (Registry, error)

var (
	schemesMu sync.RWMutex
	schemes   = map[string]OpenFunc{
		"file":    openFile,
		"s3":      openS3,
		"dns":     openDNS,
		"dns+srv": openDNS,
	}
)

// Register makes Open use open for URLs of scheme (lower case), e.g. a
// Consul catalog or an etcd registry of the caller's; it replaces any
// earlier one.
func Register(scheme string, open OpenFunc) {
	schemesMu.Lock()
	defer schemesMu.Unlock()
	schemes[strings.ToLower(scheme)] = open
}

// Schemes returns the schemes Open knows, sorted.
func Schemes() []string {
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	var out []string
	for s := range schemes {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Open returns the registry of a URL:
//
//	s3://BUCKET/PREFIX   an S3 bucket (AWS S3, MinIO, ...); see S3
//	file:///PATH         a directory, on a shared filesystem; see File
//	dns://NAME[:PORT]    read-only seeds: A and AAAA records; see DNS
//	dns+srv://NAME       read-only seeds: SRV records
//
// and those of Register.
func Open(ctx context.Context, raw string) (Registry, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("registry URL %q: %v", raw, err)
	}
	schemesMu.RLock()
	open, ok := schemes[strings.ToLower(u.Scheme)]
	schemesMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("registry URL %q: unknown scheme %q; want one of %s (e.g. s3://bucket/prefix, file:///var/lib/scuttlebutt/registry)",
			raw, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}
