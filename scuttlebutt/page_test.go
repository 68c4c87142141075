package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds a headless-capable browser. Without one the browser
// test is skipped, except under CI=true, where it fails: .ci/setup
// installs Debian's chromium.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "no chromium binary found (chromium, chromium-browser, google-chrome): install it with .ci/setup " +
		"(apt-get install chromium) to run the web page test"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestWebPageInBrowser opens the web page of an agent in headless chromium:
// it lists the nodes, and when a node joins it shows it without a reload.
func TestWebPageInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	bin := binary(t)
	a1 := startAgentProc(t, bin, "page-1")
	a2 := startAgentProc(t, bin, "page-2", "-join", a1.addr)
	eventually(t, 15*time.Second, "two live nodes", func() bool { return a1.statusOf("page-2") == "alive" })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Headless)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(a1.base+"/")); err != nil {
		t.Fatalf("opening %s: %v", a1.base, err)
	}
	poll := func(what, expr string) {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second),
			chromedp.WithPollingInterval(100*time.Millisecond)))
		if err != nil || !ok {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerHTML"))
			t.Fatalf("%s: %v\npage:\n%s", what, err, html)
		}
	}
	poll("the page lists both nodes as alive",
		`document.querySelectorAll('#nodes tr[data-node-id]').length === 2 &&
		 document.querySelector('#nodes tr[data-node-id="page-1"]') !== null &&
		 document.querySelector('#nodes tr[data-node-id="page-2"][data-status="alive"]') !== null`)
	poll("the page is live", `document.getElementById('live').textContent.startsWith('Live')`)

	// Mark this page load: a reload would lose the mark.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.__sameLoad = true")); err != nil {
		t.Fatal(err)
	}
	a3 := startAgentProc(t, bin, "page-3", "-join", a2.addr)
	poll("the page shows the node that joined, without a reload",
		`window.__sameLoad === true &&
		 document.querySelector('#nodes tr[data-node-id="page-3"][data-status="alive"]') !== null &&
		 document.querySelectorAll('#nodes tr[data-node-id]').length === 3`)

	// A key set on the new node shows up too.
	a3.mustRequest("PUT", "/v1/kv/motd", "hello from page-3", 200)
	poll("the page shows the new key",
		`window.__sameLoad === true && document.querySelector('details[data-node-keys="page-3"]').textContent.includes('hello from page-3')`)
}
