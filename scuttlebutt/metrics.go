package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scuttlebutt-go/scuttlebutt"
	"github.com/scuttlebutt-go/scuttlebutt/health"
)

// checkMetrics count the health checks run on this host: by the Docker
// adapter for check labels (source "docker") and by watchers reporting to
// this agent (source "watch").
type checkMetrics struct {
	total   *prometheus.CounterVec   // by source and result
	latency *prometheus.HistogramVec // by source
}

func newCheckMetrics() *checkMetrics {
	m := &checkMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scuttlebutt_health_checks_total",
			Help: "Health checks run on this host, by source (docker labels, watch) and result (pass, fail, timeout).",
		}, []string{"source", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scuttlebutt_health_check_duration_seconds",
			Help:    "Duration of the health checks run on this host, by source.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"source"}),
	}
	for _, src := range []string{"docker", "watch"} {
		for _, res := range []string{"pass", "fail", "timeout"} {
			m.total.WithLabelValues(src, res)
		}
		m.latency.WithLabelValues(src)
	}
	return m
}

// observe counts one check.
func (m *checkMetrics) observe(source, result string, latency time.Duration) {
	m.total.WithLabelValues(source, result).Inc()
	m.latency.WithLabelValues(source).Observe(latency.Seconds())
}

// observeResult counts one check run by the Docker adapter.
func (m *checkMetrics) observeResult(source string, res health.Result) {
	result := "fail"
	switch {
	case res.OK:
		result = "pass"
	case res.TimedOut:
		result = "timeout"
	}
	m.observe(source, result, res.Latency)
}

// nodeCollector reads the node's counters and view of the cluster at each
// scrape: nothing is counted twice and nothing goes stale.
type nodeCollector struct {
	s *server

	rounds, packetsIn, packetsOut, bytesIn, bytesOut *prometheus.Desc
	streamsIn, streamsOut, dropped, refused          *prometheus.Desc
	maxPacket, nodes, keys, localKeys, phi           *prometheus.Desc
	services, instances, decommissioned, info        *prometheus.Desc
	catchUpsIn, catchUpsOut, suspicions              *prometheus.Desc
	httpConns, httpRefused                           *prometheus.Desc
}

func newNodeCollector(s *server) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("scuttlebutt_"+name, help, labels, nil)
	}
	return &nodeCollector{
		s:              s,
		rounds:         d("gossip_rounds_total", "Gossip rounds run by this node."),
		packetsIn:      d("packets_received_total", "Gossip datagrams received."),
		packetsOut:     d("packets_sent_total", "Gossip datagrams sent."),
		bytesIn:        d("bytes_received_total", "Bytes of gossip datagrams received."),
		bytesOut:       d("bytes_sent_total", "Bytes of gossip datagrams sent."),
		streamsIn:      d("streams_received_total", "Full-state exchanges over TCP accepted."),
		streamsOut:     d("streams_sent_total", "Full-state exchanges over TCP initiated."),
		dropped:        d("packets_dropped_total", "Datagrams dropped, by reason.", "reason"),
		refused:        d("state_refused_total", "Deltas from peers refused by a state limit, by limit.", "limit"),
		maxPacket:      d("max_packet_bytes", "Largest datagram sent, in bytes."),
		nodes:          d("nodes", "Nodes known here, this one included, by status.", "status"),
		keys:           d("keys", "Live keys held here, of every node."),
		localKeys:      d("local_keys", "Live keys of this node."),
		phi:            d("peer_phi", "Failure detector suspicion of each peer (dead above the threshold).", "peer"),
		services:       d("services", "Services with at least one instance on a live node."),
		instances:      d("service_instances", "Service instances on live nodes, by service and health (Docker's: healthy, none, starting, unhealthy; checks': passing, failing, starting, expired; maintenance).", "service", "health"),
		decommissioned: d("decommissioned_nodes", "Node IDs decommissioned and not cleared."),
		info:           d("node_info", "This node's ID and address (value 1).", "id", "addr"),
		catchUpsIn:     d("catch_ups_received_total", "Catch-up streams applied: a peer found this node far behind and sent the difference over TCP."),
		catchUpsOut:    d("catch_ups_sent_total", "Catch-up streams started to peers far behind."),
		suspicions: d("suspicions_total", "Watched nodes this node suspected and probed through helpers, by outcome "+
			"(suspected: every suspicion; cleared: an answer came; inconclusive: no helper confirmed, asked again).", "outcome"),
		httpConns:   d("http_connections", "HTTP connections open now (bounded by -http-max-conns)."),
		httpRefused: d("http_connections_closed_total", "HTTP connections closed or refused at a bound, by bound (per_client, idle, fair_share, total).", "bound"),
	}
}

// Describe sends the descriptors of every metric.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rounds, c.packetsIn, c.packetsOut, c.bytesIn, c.bytesOut,
		c.streamsIn, c.streamsOut, c.dropped, c.refused, c.maxPacket, c.nodes, c.keys, c.localKeys, c.phi,
		c.services, c.instances, c.decommissioned, c.info, c.catchUpsIn, c.catchUpsOut, c.suspicions,
		c.httpConns, c.httpRefused} {
		ch <- d
	}
}

// Collect reads the node's Stats and Nodes, and the services view.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.s.node
	st := n.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.rounds, st.Rounds)
	counter(c.packetsIn, st.PacketsIn)
	counter(c.packetsOut, st.PacketsOut)
	counter(c.bytesIn, st.BytesIn)
	counter(c.bytesOut, st.BytesOut)
	counter(c.streamsIn, st.StreamsIn)
	counter(c.streamsOut, st.StreamsOut)
	for reason, v := range st.Dropped {
		counter(c.dropped, v, reason)
	}
	for limit, v := range st.Refused {
		counter(c.refused, v, limit)
	}
	gauge(c.maxPacket, float64(st.MaxPacketBytes))
	counter(c.catchUpsIn, st.CatchUpsIn)
	counter(c.catchUpsOut, st.CatchUpsOut)
	counter(c.suspicions, st.Suspicions, "suspected")
	counter(c.suspicions, st.Cleared, "cleared")
	counter(c.suspicions, st.Inconclusive, "inconclusive")
	if c.s.conns != nil {
		open, closed := c.s.conns.stats()
		gauge(c.httpConns, float64(open))
		for _, bound := range []string{"per_client", "idle", "fair_share", "total"} {
			counter(c.httpRefused, closed[bound], bound)
		}
	}

	byStatus := map[string]int{}
	for _, s := range []scuttlebutt.Status{scuttlebutt.StatusAlive, scuttlebutt.StatusDead, scuttlebutt.StatusLeft} {
		byStatus[s.String()] = 0
	}
	keys := 0
	for _, ni := range n.Nodes() {
		byStatus[ni.Status.String()]++
		keys += ni.Keys
		if ni.Local {
			gauge(c.localKeys, float64(ni.Keys))
			gauge(c.info, 1, ni.ID, ni.Addr)
		} else {
			gauge(c.phi, ni.Phi, ni.ID)
		}
	}
	for status, v := range byStatus {
		gauge(c.nodes, float64(v), status)
	}
	gauge(c.keys, float64(keys))

	snap := c.s.services.get()
	gauge(c.services, float64(len(snap.names)))
	for _, name := range snap.names {
		by := map[string]int{}
		for _, in := range snap.byName[name] {
			by[in.Verdict]++ // Docker's health, or the agent's check (passing, failing, starting, expired)
		}
		for health, v := range by {
			gauge(c.instances, float64(v), name, health)
		}
	}
	out := 0
	for _, d := range c.s.decom.list() {
		if !d.Cleared {
			out++
		}
	}
	gauge(c.decommissioned, float64(out))
}

// newMetricsHandler serves the node's metrics with the Go runtime's and the
// process's, from a registry of its own (no global state).
func newMetricsHandler(s *server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newNodeCollector(s), s.checks.total, s.checks.latency, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.dnsMetrics.collectors()...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
