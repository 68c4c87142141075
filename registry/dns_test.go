package registry

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDNSHosts resolves a real name, localhost, with the system resolver.
func TestDNSHosts(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, "dns://localhost:7946")
	if err != nil {
		t.Fatal(err)
	}
	es, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, e := range es {
		if !e.Live(time.Now(), time.Second) || e.ID != e.Addr || e.IsSlot() {
			t.Errorf("a DNS entry is a live heartbeat named by its address: %+v", e)
		}
		addrs = append(addrs, e.Addr)
	}
	if !slices.Contains(addrs, "127.0.0.1:7946") && !slices.Contains(addrs, "[::1]:7946") {
		t.Fatalf("dns://localhost:7946 gave %v", addrs)
	}
	r, _ = Open(ctx, "dns://localhost")
	if es, _ := r.List(ctx); len(es) == 0 || !strings.HasSuffix(es[0].Addr, ":8119") {
		t.Fatalf("dns://localhost (default port): %+v", es)
	}
	// Read-only: no heartbeats, no slots, no roles.
	for _, err := range []error{
		r.Put(ctx, entryAt("a", time.Now())),
		r.Delete(ctx, entryAt("a", time.Now())),
		r.Claim(ctx, 0, entryAt("a", time.Now()), time.Minute),
		r.Release(ctx, 0, entryAt("a", time.Now())),
	} {
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("a write to DNS: %v", err)
		}
	}
	if _, err := Choose(ctx, r, entryAt("a", time.Now()), 3, time.Minute); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Choose on DNS: %v, want ErrUnsupported", err)
	}
	if n, err := Purge(ctx, r, []Entry{entryAt("old", time.Time{}.Add(time.Hour))}, time.Now(), time.Minute); n != 0 || err != nil {
		t.Errorf("Purge on DNS: %d, %v", n, err)
	}
}

// srvResolver answers SRV lookups from a table: a test double, since a
// DNS server with SRV records is not something a test can count on.
type srvResolver map[string][]*net.SRV

func (r srvResolver) LookupHost(context.Context, string) ([]string, error) {
	return nil, errors.New("not used")
}

func (r srvResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if service != "" || proto != "" {
		return "", nil, errors.New("want the name as it is")
	}
	srvs, ok := r[name]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return name, srvs, nil
}

func TestDNSSRV(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, "dns+srv://_scuttlebutt._tcp.example.com")
	if err != nil {
		t.Fatal(err)
	}
	d := r.(*DNS)
	d.Resolver = srvResolver{"_scuttlebutt._tcp.example.com": {
		{Target: "a.example.com.", Port: 8119}, {Target: "b.example.com.", Port: 9000}, {Target: "a.example.com.", Port: 8119},
	}}
	es, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(JoinAddrs(es, "", time.Now(), time.Minute), ",")
	if want := "a.example.com:8119,b.example.com:9000"; got != want {
		t.Fatalf("SRV seeds: %s, want %s", got, want)
	}
	d.Name = "_missing._tcp.example.com"
	if _, err := r.List(ctx); err == nil || !strings.Contains(err.Error(), "SRV") || !strings.Contains(err.Error(), "check the name") {
		t.Fatalf("a missing name: %v", err)
	}
}
