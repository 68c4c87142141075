package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// TestConsulEndToEnd: github.com/hashicorp/consul/api against a cluster of
// three agents reads what the cluster holds from any agent; a blocking
// Health().Service returns when an instance enters maintenance on another
// node; a thousand blocked queries cost bounded memory and leave the agent
// answering.
func TestConsulEndToEnd(t *testing.T) {
	bin := binary(t)
	c1 := startAgentProc(t, bin, "consul-1", "-http-max-conns-per-client", "2000")
	c2 := startAgentProc(t, bin, "consul-2", "-join", c1.addr)
	c3 := startAgentProc(t, bin, "consul-3", "-join", c1.addr)
	for _, p := range []*proc{c1, c2, c3} {
		eventually(t, 15*time.Second, p.id+" sees three live nodes", func() bool {
			ns := p.nodes()
			return ns["consul-1"].Status == "alive" && ns["consul-2"].Status == "alive" && ns["consul-3"].Status == "alive"
		})
	}
	put := func(p *proc, name, host string, port int) { // a registration, as `scuttlebutt watch` makes
		p.mustRequest("PUT", "/v1/registrations/web/"+name, fmt.Sprintf(`{"host":%q,"port":%d,"tags":["v1"],"ttl":"1m","check":{"status":"passing"}}`, host, port), 200)
	}
	put(c2, "web-2", "127.0.0.42", 8082)
	put(c3, "web-3", "127.0.0.43", 8083)

	client, err := consul.NewClient(&consul.Config{Address: strings.TrimPrefix(c1.base, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	var entries []*consul.ServiceEntry
	var meta *consul.QueryMeta
	eventually(t, 10*time.Second, "consul-1 answers both instances as passing", func() bool {
		entries, meta, err = client.Health().Service("web", "v1", true, nil)
		return err == nil && len(entries) == 2
	})
	if entries[0].Node.Node != "consul-2" || entries[0].Service.Address != "127.0.0.42" || entries[0].Service.Port != 8082 {
		t.Errorf("entries %+v", entries[0])
	}
	if svcs, _, err := client.Catalog().Services(nil); err != nil || len(svcs["web"]) != 1 {
		t.Errorf("Catalog().Services: %v %v", svcs, err)
	}
	if cat, _, err := client.Catalog().Service("web", "", nil); err != nil || len(cat) != 2 {
		t.Errorf("Catalog().Service: %v %v", cat, err)
	}
	if self, err := client.Agent().Self(); err != nil || self["Config"]["Datacenter"] != "e2e" {
		t.Errorf("Agent().Self: %v %v", self, err)
	}

	// A blocking query on consul-1 returns when web-3 enters maintenance on
	// consul-3, and not before.
	done := make(chan struct{})
	var got []*consul.ServiceEntry
	var gotMeta *consul.QueryMeta
	go func() {
		defer close(done)
		got, gotMeta, err = client.Health().Service("web", "v1", true, &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 30 * time.Second})
	}()
	select {
	case <-done:
		t.Fatalf("returned before any change: %v %v", got, err)
	case <-time.After(300 * time.Millisecond): // stays blocked a while
	}
	c3.mustRequest("PUT", "/v1/maintenance/web-3", `{"reason":"deploy"}`, 200)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query did not return after the maintenance")
	}
	if err != nil || len(got) != 1 || got[0].Service.ID != "web-2" || gotMeta.LastIndex <= meta.LastIndex {
		t.Fatalf("after the maintenance: %+v %+v %v", got, gotMeta, err)
	}

	// A thousand blocked queries: memory bounded, other requests answered.
	pid := c1.cmd.Process.Pid
	before := rssKB(pid)
	const blocked = 1000
	var wg sync.WaitGroup
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: blocked}
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	url := fmt.Sprintf("%s/v1/health/service/web?passing=1&tag=v1&wait=20s&index=%d", c1.base, gotMeta.LastIndex)
	var returned sync.WaitGroup
	returned.Add(blocked)
	for range blocked {
		wg.Go(func() {
			defer returned.Done()
			if resp, err := hc.Get(url); err == nil {
				resp.Body.Close()
			}
		})
	}
	eventually(t, 20*time.Second, "a thousand queries blocked", func() bool {
		m := c1.mustRequest("GET", "/metrics", "", 200)
		return strings.Contains(m, "go_goroutines ") && goroutines(m) >= blocked
	})
	start := time.Now()
	c1.mustRequest("GET", "/v1/agent/self", "", 200)
	if d := time.Since(start); d > time.Second {
		t.Errorf("/v1/agent/self took %v with %d blocked queries", d, blocked)
	}
	after := rssKB(pid)
	t.Logf("%d blocked queries: agent RSS %d KB before, %d KB after (+%.1f MB)", blocked, before, after, float64(after-before)/1024)
	if after-before > 100*1024 {
		t.Errorf("%d blocked queries cost %d KB of RSS, want under 100 MB", blocked, after-before)
	}
	// A change wakes them all.
	c3.mustRequest("DELETE", "/v1/maintenance/web-3", "", 200)
	wg.Wait()
	tr.CloseIdleConnections()
}

func rssKB(pid int) int {
	s := readRSS(pid, "VmRSS") // "12.3 MB"
	f, _ := strconv.ParseFloat(strings.Fields(s)[0], 64)
	return int(f * 1024)
}

func goroutines(metrics string) int {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}
