package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// monitoredFake is a fake node that tells whom it monitors.
type monitoredFake struct{ *fakeNode }

func (monitoredFake) Monitors() []string { return []string{"n2", "n3"} }
func (monitoredFake) Watched() []string  { return []string{"n3"} }

// GET /v1/monitoring shows the node's monitors and watched nodes through
// the agent's publisher; a node that cannot tell shows empty lists.
func TestMonitoringEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name              string
		node              clusterNode
		monitors, watched []string
	}{
		{"monitoring node", monitoredFake{newFakeNode("n1", "n2", "n3")}, []string{"n2", "n3"}, []string{"n3"}},
		{"plain node", newFakeNode("n1", "n2"), []string{}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub()
			log := slog.New(slog.DiscardHandler)
			d := newDecommissions("n1", log)
			pub := &localPublisher{clusterNode: tc.node, hub: h, sub: &subscriber{hub: h, decom: d, log: log}}
			ts := httptest.NewServer(newServer(pub, h, d, serverOptions{}))
			defer ts.Close()
			resp, err := http.Get(ts.URL + "/v1/monitoring")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct{ Monitors, Watched []string }
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			if !slices.Equal(got.Monitors, tc.monitors) || !slices.Equal(got.Watched, tc.watched) || got.Monitors == nil {
				t.Fatalf("got %+v, want monitors %v watched %v", got, tc.monitors, tc.watched)
			}
		})
	}
}
