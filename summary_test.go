package scuttlebutt

import "testing"

// The test vectors of docs/protocol.md §5 and §9: a second implementation
// checks its hashes against them.
func TestSummaryTestVectors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uint64
	}{
		{`h("a")`, idHash("a"), 0xaf63dc4c8601ec8c},
		{`mix(h("a")), its ring position`, mix64(idHash("a")), 0x02c0bdbf481420f8},
		{`term("a", 7, 2)`, summaryTerm(idHash("a"), 7, 2), 0xc31f56c850d06a6c},
		{`term("node-1", 1700000000000000000, 12)`, summaryTerm(idHash("node-1"), 1700000000000000000, 12), 0x9f09472cd3fb6952},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#016x, want %#016x", tc.name, tc.got, tc.want)
		}
	}
	a := newTestCore(t, "a", func(c *Config) { c.Generation = 7 }) // versions: 1 :addr, 2 k
	mustSet(t, a, t0, "k", "v")
	a.applyDelta(t0, &nodeDelta{ID: "node-1", Gen: 1700000000000000000, MaxVersion: 12,
		Entries: []wireEntry{{Key: "x", Value: "y", Version: 12}}})
	if a.sum != 0x5c1611e4832b033e {
		t.Errorf("summary of a node holding a@7.2 and node-1@1700000000000000000.12 = %#016x, want 0x5c1611e4832b033e", a.sum)
	}
	if h := keyHint([]byte("0123456789abcdef0123456789abcdef")); h != [4]byte{0xe9, 0x74, 0x28, 0x17} {
		t.Errorf(`hint of the key "0123456789abcdef0123456789abcdef" = % x, want e9 74 28 17`, h)
	}
}
