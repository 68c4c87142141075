package registry

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is the port of dns:// seeds given without one: the gossip
// port of scuttlebutt's daemon.
const DefaultPort = 8119

// Resolver is what DNS needs of a resolver; *net.Resolver has it.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// DNS is a read-only registry of seeds in DNS: dns://NAME[:PORT] lists the
// A and AAAA records of NAME (port DefaultPort unless given), and
// dns+srv://NAME the targets and ports of the SRV records of NAME (e.g.
// _scuttlebutt._tcp.example.com). Every address is a live entry whose ID
// is the address. DNS cannot be written: Put, Delete, Claim and Release
// return ErrUnsupported, so it cannot give roles.
type DNS struct {
	Name     string   // the name to look up
	Port     int      // for A/AAAA records
	SRV      bool     // look up SRV records instead
	Resolver Resolver // nil: net.DefaultResolver
	Now      func() time.Time
}

var _ Registry = (*DNS)(nil)

// openDNS opens dns://NAME[:PORT] and dns+srv://NAME.
func openDNS(_ context.Context, u *url.URL) (Registry, error) {
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		if u.Scheme == "dns+srv" {
			return nil, fmt.Errorf("registry %s: want dns+srv://NAME", u.Redacted())
		}
		return nil, fmt.Errorf("registry %s: want dns://NAME[:PORT]", u.Redacted())
	}
	d := &DNS{Name: u.Hostname(), Port: DefaultPort, SRV: u.Scheme == "dns+srv"}
	if p := u.Port(); p != "" {
		if d.SRV {
			return nil, fmt.Errorf("registry %s: SRV records carry the port; drop :%s", u.Redacted(), p)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("registry %s: port %q is not a number from 1 to 65535", u.Redacted(), p)
		}
		d.Port = n
	}
	return d, nil
}

// String returns the registry's URL.
func (d *DNS) String() string {
	if d.SRV {
		return "dns+srv://" + d.Name
	}
	return "dns://" + net.JoinHostPort(d.Name, strconv.Itoa(d.Port))
}

// List looks the name up: every address is a live entry, in the order of
// the answer (SRV: by priority, then weight, as net.LookupSRV sorts them).
func (d *DNS) List(ctx context.Context) ([]Entry, error) {
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	var addrs []string
	if d.SRV {
		_, srvs, err := r.LookupSRV(ctx, "", "", d.Name)
		if err != nil {
			return nil, fmt.Errorf("registry %s: looking up SRV records: %w (check the name and the DNS server of this host)", d, err)
		}
		for _, s := range srvs {
			addrs = append(addrs, net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port))))
		}
	} else {
		hosts, err := r.LookupHost(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("registry %s: looking up addresses: %w (check the name and the DNS server of this host)", d, err)
		}
		for _, h := range hosts {
			addrs = append(addrs, net.JoinHostPort(h, strconv.Itoa(d.Port)))
		}
	}
	var out []Entry
	for _, a := range addrs {
		if slices.ContainsFunc(out, func(e Entry) bool { return e.Addr == a }) {
			continue
		}
		out = append(out, Entry{ID: a, Addr: a, Time: now, Slot: -1, Key: d.String()})
	}
	return out, nil
}

// Put returns ErrUnsupported: DNS is read-only.
func (d *DNS) Put(context.Context, Entry) error { return d.unsupported("heartbeats") }

// Delete returns ErrUnsupported: DNS is read-only.
func (d *DNS) Delete(context.Context, Entry) error { return d.unsupported("heartbeats") }

// Claim returns ErrUnsupported: DNS cannot hold server slots.
func (d *DNS) Claim(context.Context, int, Entry, time.Duration) error {
	return d.unsupported("server slots")
}

// Release returns ErrUnsupported: DNS cannot hold server slots.
func (d *DNS) Release(context.Context, int, Entry) error { return d.unsupported("server slots") }

func (d *DNS) unsupported(what string) error {
	return fmt.Errorf("registry %s: DNS seeds are read-only and cannot hold %s: %w", d, what, ErrUnsupported)
}
