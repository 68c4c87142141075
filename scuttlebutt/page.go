package main

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

//go:embed templates/*.html
var templateFS embed.FS

var pageTemplates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// maxPageValue is how much of a value the page shows.
const maxPageValue = 200

type pageKV struct{ Key, Value string }

type pageNode struct {
	nodeView
	Heard string
	KV    []pageKV
}

type pageService struct {
	Name      string
	Instances []instanceView
}

type pageData struct {
	Self          string
	Now           time.Time
	Nodes         []pageNode
	Alive, Dead   int
	Left          int
	Services      []pageService
	Decommissions []decommissionView
}

func (s *server) pageData() pageData {
	now := time.Now()
	d := pageData{Self: s.node.ID(), Now: now}
	for _, nv := range s.nodes() {
		pn := pageNode{nodeView: nv, Heard: ago(now, nv.LastHeard, nv.Local)}
		switch nv.Status {
		case scuttlebutt.StatusAlive:
			d.Alive++
		case scuttlebutt.StatusDead:
			d.Dead++
		case scuttlebutt.StatusLeft:
			d.Left++
		}
		if state, ok := s.node.State(nv.ID); ok {
			for _, k := range sortedKeys(state) {
				v := state[k]
				if len(v) > maxPageValue {
					v = v[:maxPageValue] + "…"
				}
				pn.KV = append(pn.KV, pageKV{Key: k, Value: v})
			}
		}
		d.Nodes = append(d.Nodes, pn)
	}
	snap := s.services.get()
	for _, name := range snap.names {
		d.Services = append(d.Services, pageService{Name: name, Instances: snap.byName[name]})
	}
	d.Decommissions = s.decom.list()
	return d
}

func ago(now, t time.Time, local bool) string {
	switch {
	case local:
		return "–"
	case t.IsZero():
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	if d < time.Minute {
		return fmt.Sprintf("%.0fs ago", d.Seconds())
	}
	return d.Truncate(time.Second).String() + " ago"
}

func (s *server) render(w http.ResponseWriter, name string) {
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, name, s.pageData()); err != nil {
		s.log.Error("rendering the page", "err", err)
		writeError(w, http.StatusInternalServerError, "rendering the page failed")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

func (s *server) handlePage(w http.ResponseWriter, r *http.Request)     { s.render(w, "page") }
func (s *server) handleFragment(w http.ResponseWriter, r *http.Request) { s.render(w, "cluster") }
