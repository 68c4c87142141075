package main

import "net/http"

// monitoringNode is a node that tells whom it monitors and who monitors it
// (*scuttlebutt.Node does; the API's test fakes need not).
type monitoringNode interface {
	Monitors() []string
	Watched() []string
}

// handleMonitoring answers GET /v1/monitoring: the nodes this node sends
// its heartbeats to (monitors) and the nodes it judges (watched), so that
// a fault can be aimed at a monitoring link.
func (s *server) handleMonitoring(w http.ResponseWriter, r *http.Request) {
	out := map[string][]string{"monitors": {}, "watched": {}}
	var node any = s.node
	if p, ok := node.(*localPublisher); ok {
		node = p.clusterNode // the agent's node behind its publisher
	}
	if m, ok := node.(monitoringNode); ok {
		out["monitors"], out["watched"] = m.Monitors(), m.Watched()
	}
	writeJSON(w, http.StatusOK, out)
}
