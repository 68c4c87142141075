package main

import (
	"net"
	"sync/atomic"
)

// Bytes on the wire, as an interface counter would see them, counted at
// each node's transport for what that node sends:
//
//   - a datagram: its payload and 28 bytes of IPv4 (20) and UDP (8) headers;
//   - a stream (TCP): every write's payload, 40 bytes of IPv4 and TCP
//     headers per segment of at most tcpMSS bytes and one bare 40-byte
//     segment (the peer's ACK) per write; and, at the dialling side, 7
//     bare segments for the handshake and the close of the connection
//     (SYN, SYN-ACK, ACK, FIN, ACK, FIN, ACK). TCP options and retransmits
//     are left out, so streams are counted a little short.
const (
	udpIPv4Headers = 28
	tcpIPv4Headers = 40
	tcpMSS         = 1460
	tcpBareConn    = 7 * tcpIPv4Headers
)

// wireCounter adds up one node's bytes on the wire.
type wireCounter struct {
	datagrams atomic.Uint64 // bytes of datagrams, headers included
	streams   atomic.Uint64 // bytes of streams, headers included
}

func (w *wireCounter) datagram(payload int) {
	w.datagrams.Add(uint64(payload + udpIPv4Headers))
}

// countConn counts what a node writes on a stream.
type countConn struct {
	net.Conn
	w *wireCounter
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		segments := (n + tcpMSS - 1) / tcpMSS
		c.w.streams.Add(uint64(n + (segments+1)*tcpIPv4Headers))
	}
	return n, err
}

// dialled wraps a connection the node opened, counting its handshake.
func (w *wireCounter) dialled(c net.Conn) net.Conn {
	w.streams.Add(tcpBareConn)
	return &countConn{Conn: c, w: w}
}

// accepted wraps a connection the node accepted.
func (w *wireCounter) accepted(c net.Conn) net.Conn { return &countConn{Conn: c, w: w} }

// forwardStreams passes the connections of in to a new channel, each
// wrapped to count what the node writes on it; the new channel closes with
// in.
func forwardStreams(in <-chan net.Conn, w *wireCounter) <-chan net.Conn {
	out := make(chan net.Conn)
	go func() {
		defer close(out)
		for c := range in {
			out <- w.accepted(c)
		}
	}()
	return out
}
