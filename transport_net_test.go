package scuttlebutt

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// Datagrams reach a peer named by host name, and a name is resolved again
// once its answer is older than resolveEvery.
func TestNetTransportResolvesNames(t *testing.T) {
	a, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, port, _ := net.SplitHostPort(b.Addr())
	named := net.JoinHostPort("localhost", port)
	if err := a.WriteTo([]byte("hello"), named); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-b.Packets():
		if string(p.Data) != "hello" || p.From != a.Addr() {
			t.Fatalf("got %q from %s", p.Data, p.From)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no datagram through a host name")
	}

	// A stale answer is replaced by a fresh lookup.
	stale := netip.MustParseAddrPort("127.0.0.1:1")
	a.mu.Lock()
	a.resolved[named] = resolution{addr: stale, at: time.Now().Add(-2 * resolveEvery)}
	a.mu.Unlock()
	got, err := a.resolve(named)
	if err != nil || got == stale {
		t.Fatalf("resolve after expiry = %v, %v", got, err)
	}
	// A fresh answer is used as it is.
	a.mu.Lock()
	a.resolved[named] = resolution{addr: stale, at: time.Now()}
	a.mu.Unlock()
	if got, _ := a.resolve(named); got != stale {
		t.Fatalf("fresh cached answer not used: %v", got)
	}
}

func TestListenRefusesBadAddress(t *testing.T) {
	if _, err := Listen("no-port"); err == nil {
		t.Fatal("Listen(no-port) succeeded")
	}
}
