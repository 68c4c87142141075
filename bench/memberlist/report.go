package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// report prints the figures as a Markdown table, one column per system and
// the ratio scuttlebutt / memberlist (below 1: scuttlebutt is lower, which
// is better for every row).
func report(o options, rs []result) {
	preset := "DefaultLocalConfig, 100 ms rounds"
	if o.lan {
		preset = "DefaultLANConfig, 200 ms rounds"
	}
	fmt.Printf("N = %d, loopback, %s, %d updates every %v, %d crashes, encrypted %v, memberlist rebroadcast %v\n\n",
		o.n, preset, o.updates, o.every, o.crashes, o.encrypt, o.rebroadcast)
	head := "| figure |"
	rule := "|---|"
	for _, r := range rs {
		head += " " + r.system + " |"
		rule += "---|"
	}
	if len(rs) == 2 {
		head += " scuttlebutt / memberlist |"
		rule += "---|"
	}
	fmt.Println(head)
	fmt.Println(rule)
	dur := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	row := func(label string, value func(result) float64, format func(result, float64) string) {
		line := "| " + label + " |"
		for _, r := range rs {
			line += " " + format(r, value(r)) + " |"
		}
		if len(rs) == 2 {
			a, b := value(rs[0]), value(rs[1])
			if a > 0 {
				line += fmt.Sprintf(" %.3g× |", b/a)
			} else {
				line += " – |"
			}
		}
		fmt.Println(line)
	}
	secs := func(f func(result) time.Duration, bad func(result) string) (func(result) float64, func(result, float64) string) {
		return func(r result) float64 { return f(r).Seconds() },
			func(r result, _ float64) string { return dur(f(r)) + bad(r) }
	}
	none := func(result) string { return "" }
	// An update still missing after -straggle counts as that long (the
	// figure is then a lower bound, and the ratio an upper one).
	upd := func(r result) time.Duration {
		if r.missed > 0 {
			return o.straggle
		}
		return r.max
	}
	row("update reaches every node, max", func(r result) float64 { return upd(r).Seconds() }, func(r result, _ float64) string {
		if r.missed > 0 {
			return fmt.Sprintf("> %s (%d of %d missed)", dur(o.straggle), r.missed, o.updates*(o.n-1))
		}
		return dur(r.max)
	})
	v, f := secs(func(r result) time.Duration { return r.p50 }, none)
	row("update reaches every node, p50", v, f)
	if o.crashes > 0 {
		v, f = secs(func(r result) time.Duration { return slices.Max(r.crashLast) }, func(r result) string {
			if !r.crashOK {
				return " (not all within 60 s)"
			}
			return ""
		})
		row(fmt.Sprintf("crash declared dead by every node (worst of %d)", o.crashes), v, f)
		v, f = secs(func(r result) time.Duration { return slices.Min(r.crashFirst) }, none)
		row("crash declared dead by a first node (best)", v, f)
	}
	v, f = secs(func(r result) time.Duration { return r.formed }, func(r result) string {
		if !r.formedOK {
			return " (not formed)"
		}
		return ""
	})
	row(fmt.Sprintf("membership formed (%d joins)", o.n-1), v, f)
	num := func(r result, x float64) string { return commas(x) }
	row(fmt.Sprintf("bytes/node/s idle (on the wire, headers included; over %v)", o.idle), func(r result) float64 { return r.idleBytes }, num)
	row("  of which streams (TCP: push/pull, joins)", func(r result) float64 { return r.idleStream }, num)
	// While updates flow: the datagrams of the window, and the streams at
	// their idle rate: push/pull is periodic, and the few seconds of the
	// window hold a share of it that depends on the phase (shown below).
	row(fmt.Sprintf("bytes/node/s while %d updates flow (streams at their idle rate)", o.updates),
		func(r result) float64 { return r.busyDatagrams + r.idleStream }, num)
	row("  datagrams only", func(r result) float64 { return r.busyDatagrams }, num)
	row("  streams within the window, as measured", func(r result) float64 { return r.busyStream }, num)
	pct := func(r result, x float64) string { return fmt.Sprintf("%.3f %%", 100*x) }
	row("CPU per node, idle (share of a core)", func(r result) float64 { return r.idleCPU }, pct)
	row("CPU per node, while updates flow", func(r result) float64 { return r.busyCPU }, pct)
}

// commas formats x rounded, with thousands separated by commas.
func commas(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
