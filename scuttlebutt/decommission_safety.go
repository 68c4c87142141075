package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Cluster-wide decommissions are safe by default:
//
//   - A node whose API needs a token publishes authKey = "token". A marker
//     for it must carry an HMAC under that token (the agent that takes the
//     request computes it with the token given in the request, or with
//     its own); the target verifies it, and answers a marker without the
//     right one with a newer marker that clears it ("refused").
//   - An agent refuses (409) to decommission its own last live peer, the
//     last live node, or, counting the decommissions of the last
//     decommissionWindow, more than half of the cluster, unless the
//     request says force.
//   - With -data-dir, every marker this agent holds is saved there and
//     published again at the next start, so that "stays out until
//     cleared" holds after a restart of the whole cluster.

// authKey is the key a node sets to "token" when its API needs a token.
const authKey = "auth"

// decommissionWindow is how long a decommission counts towards the
// "at most half of the cluster" rule.
const decommissionWindow = 10 * time.Minute

// markerMAC returns the HMAC of a decommission of id under token.
func markerMAC(token, id string, m marker) string {
	h := hmac.New(sha256.New, []byte(token))
	fmt.Fprintf(h, "scuttlebutt-decommission-v1\n%s\n%d\n%s\n", id, m.At, m.By)
	return hex.EncodeToString(h.Sum(nil))
}

// validMAC reports whether m carries the HMAC of a decommission of id
// under token.
func validMAC(token, id string, m marker) bool {
	got, err := hex.DecodeString(m.MAC)
	if err != nil {
		return false
	}
	want, _ := hex.DecodeString(markerMAC(token, id, m))
	return hmac.Equal(got, want)
}

// decommissionRequest is the optional body of POST /v1/nodes/{id}/decommission.
type decommissionRequest struct {
	Token string `json:"token"` // the target's token, when it has one and it is not this agent's
	Force bool   `json:"force"` // past the safety rules
}

// errUnsafe is a decommission the safety rules refuse.
var errUnsafe = errors.New("unsafe decommission")

// checkSafe applies the safety rules to a decommission of id by this node.
func (d *decommissions) checkSafe(n clusterNode, id string) error {
	live := map[string]bool{}
	for _, ni := range n.Nodes() {
		if ni.Status == scuttlebutt.StatusAlive {
			live[ni.ID] = true
		}
	}
	peers := len(live)
	if live[d.self] {
		peers--
	}
	switch {
	case id != d.self && live[id] && peers == 1:
		return fmt.Errorf("%w: %s is the last live peer of this node", errUnsafe, id)
	case id == d.self && peers == 0:
		return fmt.Errorf("%w: this node is the last live node; nothing would keep its marker", errUnsafe)
	}
	// The decommissions of the last window count as one: a loop over the
	// members stops at half of them.
	cluster := map[string]bool{}
	for k := range live {
		cluster[k] = true
	}
	recent := 0
	now := time.Now()
	d.mu.Lock()
	for other, m := range d.known {
		if !m.Cleared && other != id && now.Sub(time.Unix(0, m.At)) < decommissionWindow {
			recent++
			cluster[other] = true
		}
	}
	d.mu.Unlock()
	cluster[id] = true
	if 2*(recent+1) > len(cluster) {
		return fmt.Errorf("%w: with %s, %d of the cluster's %d nodes would have been decommissioned within %v (more than half)",
			errUnsafe, id, recent+1, len(cluster), decommissionWindow)
	}
	return nil
}

// decommissionStore saves markers under -data-dir.
type decommissionStore struct {
	path string
}

// savedMarkers is the content of the file: markers by node ID.
type savedMarkers struct {
	Markers map[string]marker `json:"markers"`
}

// load returns the saved markers; none when the file does not exist.
func (s *decommissionStore) load() (map[string]marker, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f savedMarkers
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %v (remove it to start without saved decommissions)", s.path, err)
	}
	return f.Markers, nil
}

// save writes the markers (a new file renamed over the old).
func (s *decommissionStore) save(known map[string]marker) error {
	b, err := json.MarshalIndent(savedMarkers{Markers: known}, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

// dataFlags are the agent's flags of what outlives the process.
type dataFlags struct {
	dir string
}

func (f *dataFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dir, "data-dir", "", "`directory` of what outlives the agent (decommission markers, maintenance set with scuttlebutt maint); created if missing. Empty: nothing is kept")
}

// file returns the path of name under -data-dir, creating the directory;
// "" without -data-dir.
func (f *dataFlags) file(name string) (string, error) {
	if f.dir == "" {
		return "", nil
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return "", fmt.Errorf("-data-dir %s: %v", f.dir, err)
	}
	return filepath.Join(f.dir, name), nil
}

// restore publishes the saved markers again, among this node's keys, so
// that they spread as if just heard; this node's own marker (still out)
// fires its exit once another node holds it.
func (d *decommissions) restore(saved map[string]marker) {
	ids := make([]string, 0, len(saved))
	for id := range saved {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d.heard("", decommissionPrefix+id, saved[id].encode())
	}
}

// handleDecommission is POST /v1/nodes/{id}/decommission.
func (s *server) handleDecommission(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxBodySlack)
	if !ok {
		return
	}
	var req decommissionRequest
	if len(body) > 0 {
		if err := decodeStrict(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, `malformed JSON body: want {"token": "<the target's token>", "force": false}: `+err.Error())
			return
		}
	}
	if f := r.URL.Query().Get("force"); f != "" {
		force, ok := boolParam(w, r, "force")
		if !ok {
			return
		}
		req.Force = req.Force || force
	}
	id := r.PathValue("id")
	if _, ok := s.node.NodeInfo(id); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown node %q", id))
		return
	}
	if m, ok := s.decom.get(id); ok && !m.Cleared {
		writeJSON(w, http.StatusOK, decommissionView{ID: id, By: m.By, At: time.Unix(0, m.At).UTC()})
		return
	}
	token := req.Token
	if token == "" {
		token = s.token
	}
	if v, _ := s.node.Lookup(id, authKey); v == "token" && token == "" {
		writeError(w, http.StatusForbidden, fmt.Sprintf("node %s protects its API with a token: a decommission needs it "+
			"(scuttlebutt decommission -target-token T, or {\"token\": \"T\"})", id))
		return
	}
	if !req.Force {
		if err := s.decom.checkSafe(s.node, id); err != nil {
			writeError(w, http.StatusConflict, err.Error()+"; to do it anyway: scuttlebutt decommission -force (?force=true)")
			return
		}
	}
	m, err := s.decom.setWith(id, false, token)
	if err != nil {
		nodeError(w, err)
		return
	}
	s.log.Info("decommission requested", "node", id, "remote", r.RemoteAddr, "force", req.Force, "authenticated", m.MAC != "")
	writeJSON(w, http.StatusAccepted, decommissionView{ID: id, By: m.By, At: time.Unix(0, m.At).UTC()})
}
