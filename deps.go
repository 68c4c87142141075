//go:build tools

package scuttlebutt

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/moby/moby/client"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/vmihailenco/msgpack/v5"
)
