package scuttlebutt

import (
	"encoding/json"
	"testing"
)

func TestStatusJSONRoundTrip(t *testing.T) {
	for s := StatusAlive; s <= StatusRemoved; s++ {
		b, err := json.Marshal(NodeInfo{ID: "a", Status: s})
		if err != nil {
			t.Fatal(err)
		}
		var back NodeInfo
		if err := json.Unmarshal(b, &back); err != nil || back.Status != s {
			t.Fatalf("%s: got %v, %v from %s", s, back.Status, err, b)
		}
	}
	var s Status
	if err := s.UnmarshalText([]byte("zombie")); err == nil {
		t.Fatal("unknown status accepted")
	}
}
