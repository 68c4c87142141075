// Package consulsd tests the agent's Consul-compatible API with
// Prometheus's own Consul service discovery
// (github.com/prometheus/prometheus/discovery/consul). It is a module of
// its own so that Prometheus's dependencies stay out of the main go.mod;
// .ci/run runs it.
package consulsd
