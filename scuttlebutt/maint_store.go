package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/scuttlebutt-go/scuttlebutt/docker"
)

// maintStore keeps this node's maintenance keys (maint/node and
// maint/service/<ID>, set through `scuttlebutt maint` or the API) in
// -data-dir, so that maintenance set by hand outlives a restart of the
// agent like a registration's or a label's.
type maintStore struct {
	path string
}

// savedMaint is the content of the file: the keys and their reasons.
type savedMaint struct {
	Keys map[string]string `json:"keys"`
}

// load returns the saved keys; none when the file does not exist.
func (m *maintStore) load() (map[string]string, error) {
	b, err := os.ReadFile(m.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f savedMaint
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %v (remove it to start without saved maintenance)", m.path, err)
	}
	for k := range f.Keys {
		if !strings.HasPrefix(k, docker.MaintPrefix) {
			return nil, fmt.Errorf("%s: key %q is not a maintenance key (%s…)", m.path, k, docker.MaintPrefix)
		}
	}
	return f.Keys, nil
}

// save writes the maintenance keys among state, this node's keys (a new
// file renamed over the old, mode 0600).
func (m *maintStore) save(state map[string]string) error {
	keys := map[string]string{}
	for k, v := range state {
		if strings.HasPrefix(k, docker.MaintPrefix) {
			keys[k] = v
		}
	}
	b, err := json.MarshalIndent(savedMaint{Keys: keys}, "", "  ")
	if err != nil {
		return err
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, m.path)
}

// restoreMaint writes the saved maintenance keys back among this node's
// keys at start.
func restoreMaint(n clusterNode, saved map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(saved)) {
		if err := n.UpdateLocal(k, saved[k]); err != nil {
			return err
		}
	}
	return nil
}
