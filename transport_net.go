package scuttlebutt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// resolveEvery is how long a resolved host name is trusted before it is
// looked up again, so that seeds given by name follow DNS changes.
const resolveEvery = 30 * time.Second

// NetTransport is the default Transport: UDP datagrams and TCP streams on
// one port.
type NetTransport struct {
	udp     *net.UDPConn
	tcp     *net.TCPListener
	addr    string
	packets chan Packet
	streams chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	mu       sync.Mutex
	resolved map[string]resolution
}

type resolution struct {
	addr netip.AddrPort
	at   time.Time
}

// Listen binds UDP and TCP on addr ("host:port"). With port 0 it picks a
// port free for both.
func Listen(addr string) (*NetTransport, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("scuttlebutt: bind address %q: %w", addr, err)
	}
	var lastErr error
	for range 16 {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("scuttlebutt: listen on %s: %w", addr, err)
		}
		bound := tcp.Addr().(*net.TCPAddr)
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: bound.IP, Port: bound.Port, Zone: bound.Zone})
		if err != nil {
			tcp.Close()
			lastErr = err
			if port == "0" {
				continue // the free TCP port is taken for UDP: pick another
			}
			return nil, fmt.Errorf("scuttlebutt: listen on %s/udp: %w", addr, err)
		}
		t := &NetTransport{
			udp:      udp,
			tcp:      tcp.(*net.TCPListener),
			addr:     net.JoinHostPort(host, fmt.Sprint(bound.Port)),
			packets:  make(chan Packet, 256),
			streams:  make(chan net.Conn),
			done:     make(chan struct{}),
			resolved: make(map[string]resolution),
		}
		t.wg.Add(2)
		go t.readPackets()
		go t.acceptStreams()
		return t, nil
	}
	return nil, fmt.Errorf("scuttlebutt: no port free for both UDP and TCP on %s: %w", host, lastErr)
}

// Addr returns the bound address, with the port chosen for port 0.
func (t *NetTransport) Addr() string { return t.addr }

// WriteTo sends one datagram to addr, resolving host names at most every
// 30 seconds.
func (t *NetTransport) WriteTo(b []byte, addr string) error {
	ap, err := t.resolve(addr)
	if err != nil {
		return err
	}
	_, err = t.udp.WriteToUDPAddrPort(b, ap)
	return err
}

func (t *NetTransport) resolve(addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	now := time.Now()
	t.mu.Lock()
	r, ok := t.resolved[addr]
	t.mu.Unlock()
	if ok && now.Sub(r.at) < resolveEvery {
		return r.addr, nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		if ok {
			return r.addr, nil // keep the last answer while DNS is down
		}
		return netip.AddrPort{}, err
	}
	ap := ua.AddrPort()
	t.mu.Lock()
	t.resolved[addr] = resolution{addr: ap, at: now}
	t.mu.Unlock()
	return ap, nil
}

// Packets delivers received datagrams; it is closed by Close.
func (t *NetTransport) Packets() <-chan Packet { return t.packets }

// Streams delivers accepted TCP connections; it is closed by Close.
func (t *NetTransport) Streams() <-chan net.Conn { return t.streams }

// Dial opens a TCP connection to addr.
func (t *NetTransport) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Close stops both listeners and closes the channels.
func (t *NetTransport) Close() error {
	var err error
	t.once.Do(func() {
		close(t.done)
		err = errors.Join(t.udp.Close(), t.tcp.Close())
		t.wg.Wait()
		close(t.packets)
		close(t.streams)
	})
	return err
}

func (t *NetTransport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable reported on the socket
		}
		p := Packet{From: from.String(), Data: append([]byte(nil), buf[:n]...), At: time.Now()}
		select {
		case t.packets <- p:
		case <-t.done:
			return
		}
	}
}

func (t *NetTransport) acceptStreams() {
	defer t.wg.Done()
	for {
		c, err := t.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-t.done:
				return
			case <-time.After(10 * time.Millisecond): // e.g. out of file descriptors
			}
			continue
		}
		select {
		case t.streams <- c:
		case <-t.done:
			c.Close()
			return
		}
	}
}

// advertise returns the address peers should use for a node bound to
// bound: an unspecified host is replaced by this host's first non-loopback
// unicast address (loopback if it has none).
func advertise(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	ip, err := netip.ParseAddr(host)
	if host != "" && (err != nil || !ip.IsUnspecified()) {
		return bound
	}
	best := "127.0.0.1"
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && p.Addr().IsGlobalUnicast() {
				best = p.Addr().String()
				break
			}
		}
	}
	return net.JoinHostPort(best, port)
}
