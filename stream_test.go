package scuttlebutt

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	if err := writeFrame(&buf, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if got, err := readFrame(bytes.NewReader(buf.Bytes()), 64); err != nil || string(got) != "state" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	// A huge declared length is refused before anything is allocated.
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := readFrame(bytes.NewReader(huge), maxStreamSize); !errors.Is(err, errTooLarge) {
		t.Fatalf("declared 4 GiB: %v", err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("%d bytes allocated to refuse a huge frame", n)
	}
	// A frame cut short is an error, not a short state.
	if _, err := readFrame(bytes.NewReader(buf.Bytes()[:6]), 64); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
	if _, err := readFrame(bytes.NewReader(buf.Bytes()[:2]), 64); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated header: %v", err)
	}
}
