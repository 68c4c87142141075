package main

import (
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// This file is Prometheus service discovery without Consul: GET
// /v1/sd/prometheus answers in the format of Prometheus's http_sd_configs,
// one target group per healthy instance of the services view (views.go).

// promTargetGroup is one group of http_sd_configs.
type promTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// consumerRoutes adds the endpoints read by other programs' service
// discovery: Prometheus (this file), maintenance (maint.go) and the
// Consul-compatible API (consul.go). Writes go behind guard.
func (s *server) consumerRoutes(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	mux.HandleFunc("GET /v1/sd/prometheus", s.handlePromSD)
	s.maintRoutes(mux, guard)
	s.consulRoutes(mux)
}

// promSDGroups returns the target groups of the healthy instances of
// service (every service when empty) with tag (any when empty), in a
// stable order.
func promSDGroups(snap *servicesSnapshot, service, tag string) []promTargetGroup {
	out := []promTargetGroup{}
	for _, name := range snap.names {
		if service != "" && name != service {
			continue
		}
		for _, in := range snap.byName[name] {
			if !in.Healthy || tag != "" && !hasTag(in.Tags, tag) {
				continue
			}
			out = append(out, promTargetGroup{Targets: []string{promTarget(in)}, Labels: promLabels(in)})
		}
	}
	return out
}

func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if t == tag {
			return true
		}
	}
	return false
}

// promTarget is host:port, or the host alone for an instance without a port.
func promTarget(in instanceView) string {
	if in.Port == 0 {
		return in.Host
	}
	return net.JoinHostPort(in.Host, strconv.Itoa(in.Port))
}

// promLabels are the __meta_scuttlebutt_* labels of an instance.
func promLabels(in instanceView) map[string]string {
	l := map[string]string{
		"__meta_scuttlebutt_service":    in.Service,
		"__meta_scuttlebutt_service_id": in.Name,
		"__meta_scuttlebutt_node":       in.Node,
		"__meta_scuttlebutt_node_addr":  in.NodeAddr,
		"__meta_scuttlebutt_address":    in.Host,
		"__meta_scuttlebutt_port":       strconv.Itoa(in.Port),
		"__meta_scuttlebutt_proto":      in.Proto,
		"__meta_scuttlebutt_health":     in.Verdict,
		// Tags between commas, as Prometheus's Consul discovery does, so
		// that a regex ".*,tag,.*" matches one.
		"__meta_scuttlebutt_tags": "," + strings.Join(in.Tags, ",") + ",",
	}
	if in.Container != "" {
		l["__meta_scuttlebutt_container_id"] = in.Container
		l["__meta_scuttlebutt_container_name"] = in.Name
		l["__meta_scuttlebutt_image"] = in.Image
	}
	keys := make([]string, 0, len(in.Labels))
	for k := range in.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		l["__meta_scuttlebutt_label_"+promLabelName(k)] = in.Labels[k]
	}
	return l
}

// promLabelName maps a label name onto [a-zA-Z0-9_].
func promLabelName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

func (s *server) handlePromSD(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	groups := promSDGroups(s.services.get(), q.Get("service"), q.Get("tag"))
	b, _ := json.Marshal(groups) // strings only
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}
