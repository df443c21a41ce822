package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

func fmtUS(d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func fmtMS(d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// metric is one row of the table: how to read it from a result, and the target, if any.
type metric struct {
	name   string
	value  func(r result) (float64, bool) // false = n/a
	format func(v float64) string
	// check judges vipd against HAProxy (ratio = vipd/haproxy) or alone; "" when the row has no target.
	target string
	check  func(vipd, ratio float64, haveRatio bool) (ok, known bool)
}

func rows() []metric {
	f2 := func(unit string) func(float64) string {
		return func(v float64) string { return fmt.Sprintf("%.2f%s", v, unit) }
	}
	f0 := func(unit string) func(float64) string {
		return func(v float64) string { return fmt.Sprintf("%.0f%s", v, unit) }
	}
	ratioAtLeast := func(x float64) func(float64, float64, bool) (bool, bool) {
		return func(_, ratio float64, have bool) (bool, bool) { return ratio >= x, have }
	}
	ratioAtMost := func(x float64) func(float64, float64, bool) (bool, bool) {
		return func(_, ratio float64, have bool) (bool, bool) { return ratio <= x, have }
	}
	pos := func(v float64) (float64, bool) { return v, v > 0 }
	return []metric{
		{name: "bulk throughput, 4 streams", value: func(r result) (float64, bool) { return pos(r.gbps) },
			format: f2(" Gbit/s"), target: "≥ 1.2× haproxy", check: ratioAtLeast(1.2)},
		{name: "short connections", value: func(r result) (float64, bool) { return pos(r.connPerSec) },
			format: f0(" conn/s")},
		{name: "proxy CPU per short conn", value: func(r result) (float64, bool) { return pos(float64(r.cpuPerConn) / 1e3) },
			format: f0(" µs"), target: "≤ 1.0× haproxy", check: ratioAtMost(1.0)},
		{name: "latency p50 @ 1k conn/s", value: func(r result) (float64, bool) { return pos(float64(r.p50) / 1e6) },
			format: f2(" ms"), target: "≤ haproxy", check: ratioAtMost(1.0)},
		{name: "latency p99 @ 1k conn/s", value: func(r result) (float64, bool) { return pos(float64(r.p99) / 1e6) },
			format: f2(" ms")},
		{name: "idle connections held", value: func(r result) (float64, bool) { return float64(r.idleHeld), r.idleHeld > 0 },
			format: f0("")},
		{name: "idle fds per conn", value: func(r result) (float64, bool) { return r.fdsPerConn, r.fdsPerConn >= 0 },
			format: f2(""), target: "2 per conn",
			check: func(v, _ float64, _ bool) (bool, bool) { return v <= 2.05, true }},
		{name: "idle RSS per conn", value: func(r result) (float64, bool) { return r.rssPerConnK, r.rssPerConnK >= 0 },
			format: f2(" KiB"), target: "≤ 2× haproxy", check: ratioAtMost(2.0)},
	}
}

// printTable writes rows = metrics, columns = each target, then vipd/haproxy and the verdict on the target.
func printTable(w io.Writer, results []result) {
	byName := map[string]result{}
	var names []string
	for _, r := range results {
		byName[r.name] = r
		names = append(names, r.name)
	}
	vipd, haveVipd := byName["vipd"]
	hap, haveHap := byName["haproxy"]
	haveVipd = haveVipd && vipd.skipped == ""
	haveHap = haveHap && hap.skipped == ""

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "metric\t%s\tvipd/haproxy\ttarget\t\n", strings.Join(names, "\t"))
	for _, m := range rows() {
		fmt.Fprintf(tw, "%s\t", m.name)
		for _, n := range names {
			r := byName[n]
			if v, ok := m.value(r); ok && r.skipped == "" {
				fmt.Fprintf(tw, "%s\t", m.format(v))
			} else {
				fmt.Fprint(tw, "n/a\t")
			}
		}
		ratio, haveRatio := 0.0, false
		if haveVipd && haveHap {
			v, ok1 := m.value(vipd)
			h, ok2 := m.value(hap)
			if ok1 && ok2 && h > 0 {
				ratio, haveRatio = v/h, true
			}
		}
		if haveRatio {
			fmt.Fprintf(tw, "%.2f\t", ratio)
		} else {
			fmt.Fprint(tw, "n/a\t")
		}
		verdict := ""
		if m.check != nil && haveVipd {
			v, vok := m.value(vipd)
			if ok, known := m.check(v, ratio, haveRatio); vok && known {
				verdict = " MET"
				if !ok {
					verdict = " MISSED"
				}
			} else {
				verdict = " ?"
			}
		}
		fmt.Fprintf(tw, "%s%s\t\n", m.target, verdict)
	}
	tw.Flush()
	for _, r := range results {
		if r.skipped != "" {
			fmt.Fprintf(w, "%s skipped: %s\n", r.name, r.skipped)
		}
		if r.connFailed > 0 || r.latFailed > 0 {
			fmt.Fprintf(w, "%s: %d failed short connections in the rate test, %d in the latency test\n", r.name, r.connFailed, r.latFailed)
		}
	}
}
