package scuttlebutt

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// A full-state exchange over a stream sends one frame each way: a 4-byte
// big-endian length, then that many bytes of an encoded full-state
// message. The joining node writes first.

func writeFrame(w io.Writer, b []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	bufs := net.Buffers{hdr[:], b} // one writev on a TCP connection, no copy
	_, err := bufs.WriteTo(w)
	return err
}

// readFrame reads one frame, refusing a declared length over limit before
// allocating anything.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if uint64(size) > uint64(limit) {
		return nil, fmt.Errorf("%w: stream frame of %d bytes, the limit is %d", errTooLarge, size, limit)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(r, b)
	return b, err
}
