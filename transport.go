package scuttlebutt

import (
	"context"
	"net"
	"time"
)

// Packet is one datagram received by a Transport.
type Packet struct {
	From string    // sender's address, where replies go
	Data []byte    // the payload; the node owns it
	At   time.Time // when it arrived
}

// Transport carries a node's traffic: best-effort datagrams, bounded by
// Config.MaxPacketSize, for gossip; reliable streams for full-state
// exchanges (joining) and catch-ups (a peer far behind, catchup.go). The default is UDP and TCP on one port; tests use an
// in-memory transport.
type Transport interface {
	// Addr returns the bound address, "host:port".
	Addr() string
	// WriteTo sends one datagram to addr. It must not block for long.
	WriteTo(b []byte, addr string) error
	// Packets delivers received datagrams. It is closed by Close.
	Packets() <-chan Packet
	// Dial opens a stream to addr.
	Dial(ctx context.Context, addr string) (net.Conn, error)
	// Streams delivers accepted streams. It is closed by Close.
	Streams() <-chan net.Conn
	// Close stops the transport and closes both channels.
	Close() error
}
