package main

import "net/http"

// consulRoutes adds the Consul-compatible read API.
func (s *server) consulRoutes(mux *http.ServeMux) {}
