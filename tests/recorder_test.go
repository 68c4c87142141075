package tests

import (
	"slices"
	"strings"
	"sync"
)

// recorder is a NodeSubscriber that records what it is told.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, s)
}

func (r *recorder) NotifyJoin(id string)  { r.add("join " + id) }
func (r *recorder) NotifyLeave(id string) { r.add("leave " + id) }

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.log, s)
}

func (r *recorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.log {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}
