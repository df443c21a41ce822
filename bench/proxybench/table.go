package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func fmtMS(d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// results holds every sample: by target, test and repetition.
type results struct {
	s map[string]map[string]map[int]sample
}

func newResults() *results { return &results{s: map[string]map[string]map[int]sample{}} }

func (r *results) add(rep int, target, test string, s sample) {
	if s == nil {
		return
	}
	if r.s[target] == nil {
		r.s[target] = map[string]map[int]sample{}
	}
	if r.s[target][test] == nil {
		r.s[target][test] = map[int]sample{}
	}
	r.s[target][test][rep] = s
}

// values returns a metric's value in every repetition that measured it, by repetition.
func (r *results) values(target, test, key string) map[int]float64 {
	out := map[int]float64{}
	for rep, s := range r.s[target][test] {
		if v, ok := s[key]; ok {
			out[rep] = v
		}
	}
	return out
}

func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if n := len(vs); n%2 == 1 {
		return vs[n/2], true
	} else {
		return (vs[n/2-1] + vs[n/2]) / 2, true
	}
}

// median of a metric over repetitions.
func (r *results) median(target, test, key string) (float64, bool) {
	var vs []float64
	for _, v := range r.values(target, test, key) {
		vs = append(vs, v)
	}
	return median(vs)
}

// ratio is the median over repetitions of a/b, taken within each repetition that measured both.
func (r *results) ratio(a, b, test, key string) (float64, bool) {
	va, vb := r.values(a, test, key), r.values(b, test, key)
	var rs []float64
	for rep, x := range va {
		if y, ok := vb[rep]; ok && y > 0 {
			rs = append(rs, x/y)
		}
	}
	return median(rs)
}

// metric is one row of the table: where its value comes from, how to print it, and its target if any.
type metric struct {
	name, test, key string
	format          func(v float64) string
	target          string
	// check judges vipd: its value, its ratio to haproxy and to vipd-base (ok false when unknown).
	check func(v float64, toHap, toBase ratioOK) (met, known bool)
}

type ratioOK struct {
	v  float64
	ok bool
}

func rows() []metric {
	f := func(prec int, unit string) func(float64) string {
		return func(v float64) string { return fmt.Sprintf("%.*f%s", prec, v, unit) }
	}
	hapAtMost := func(x float64) func(float64, ratioOK, ratioOK) (bool, bool) {
		return func(_ float64, h, _ ratioOK) (bool, bool) { return h.v <= x, h.ok }
	}
	hapAtLeast := func(x float64) func(float64, ratioOK, ratioOK) (bool, bool) {
		return func(_ float64, h, _ ratioOK) (bool, bool) { return h.v >= x, h.ok }
	}
	// "Not worse than today": within 5% of the baseline binary, which is within this machine's noise.
	baseAtMost := func(_ float64, _, b ratioOK) (bool, bool) { return b.v <= 1.05, b.ok }
	atMost := func(x float64) func(float64, ratioOK, ratioOK) (bool, bool) {
		return func(v float64, _, _ ratioOK) (bool, bool) { return v <= x, true }
	}
	return []metric{
		{name: "bulk throughput, 4 streams", test: "bulk", key: "gbps", format: f(2, " Gbit/s"), target: "≥ 1.2× haproxy", check: hapAtLeast(1.2)},
		{name: "proxy CPU per GB, bulk", test: "bulk", key: "cpuPerGB", format: f(3, " s"), target: "≤ vipd-base", check: baseAtMost},
		{name: "short connections, 1 CPU", test: "rate", key: "connPerSec", format: f(0, " conn/s")},
		{name: "proxy CPU per short conn, 1 CPU", test: "rate", key: "cpuPerConn", format: f(1, " µs"), target: "≤ 0.9× haproxy", check: hapAtMost(0.9)},
		{name: "  of it user space", test: "rate", key: "userPerConn", format: f(1, " µs")},
		{name: "  of it kernel", test: "rate", key: "sysPerConn", format: f(1, " µs")},
		{name: "TCP segments per short conn", test: "rate", key: "segsPerConn", format: f(1, "")},
		{name: "latency p50 @ 1k conn/s", test: "latency", key: "p50", format: f(2, " ms"), target: "≤ haproxy", check: hapAtMost(1)},
		{name: "latency p99 @ 1k conn/s", test: "latency", key: "p99", format: f(2, " ms"), target: "≤ haproxy", check: hapAtMost(1)},
		{name: "proxy CPU per conn @ 1k conn/s", test: "latency", key: "latCPUPerConn", format: f(1, " µs")},
		{name: "idle connections held", test: "idle", key: "idleHeld", format: f(0, "")},
		{name: "idle fds per conn", test: "idle", key: "fdsPerConn", format: f(2, ""), target: "2 per conn", check: atMost(2.05)},
		{name: "idle RSS per conn", test: "idle", key: "rssPerConnK", format: f(2, " KiB"), target: "≤ vipd-base", check: baseAtMost},
		{name: "storm: connects issued within", test: "storm", key: "stormWindowMS", format: f(0, " ms")},
		{name: "storm: all answered after", test: "storm", key: "stormAll", format: f(0, " ms"), target: "≤ haproxy", check: hapAtMost(1)},
		{name: "storm: p99 per client", test: "storm", key: "stormP99", format: f(0, " ms")},
		{name: "storm: refused or failed", test: "storm", key: "stormRefused", format: f(0, ""), target: "0", check: atMost(0)},
		{name: "storm: connects over 1 s (SYN resent)", test: "storm", key: "stormSlowSYN", format: f(0, "")},
		{name: "storm: listen overflows+drops (netns)", test: "storm", key: "stormOverflows", format: f(0, "")},
		{name: "storm: SYN retransmits (netns)", test: "storm", key: "stormSynRetrans", format: f(0, "")},
		{name: "storm: proxy CPU per client", test: "storm", key: "stormCPUPerConn", format: f(1, " µs")},
		{name: "storm: proxy peak RSS", test: "storm", key: "stormPeakRSS", format: f(1, " MiB")},
		{name: "short connections, 2 CPUs", test: "rate2", key: "connPerSec", format: f(0, " conn/s")},
		{name: "proxy CPU per short conn, 2 CPUs", test: "rate2", key: "cpuPerConn", format: f(1, " µs")},
	}
}

// printTable writes one row per metric: the median of every target, the median per-repetition ratios
// vipd/haproxy (and vipd/vipd-base when measured), and the verdict on the target.
func printTable(w io.Writer, res *results, targets []targetKind, o options) {
	var names []string
	for _, k := range targets {
		names = append(names, k.name)
	}
	haveBase := slices.Contains(names, "vipd-base")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw)
	header := "metric\t" + strings.Join(names, "\t") + "\tvipd/haproxy\t"
	if haveBase {
		header += "vipd/base\t"
	}
	fmt.Fprintln(tw, header+"target\t")
	for _, m := range rows() {
		if !selected(o.tests, m.test) {
			continue
		}
		fmt.Fprintf(tw, "%s\t", m.name)
		for _, n := range names {
			if v, ok := res.median(n, m.test, m.key); ok {
				fmt.Fprintf(tw, "%s\t", m.format(v))
			} else {
				fmt.Fprint(tw, "n/a\t")
			}
		}
		var toHap, toBase ratioOK
		toHap.v, toHap.ok = res.ratio("vipd", "haproxy", m.test, m.key)
		toBase.v, toBase.ok = res.ratio("vipd", "vipd-base", m.test, m.key)
		printRatio(tw, toHap)
		if haveBase {
			printRatio(tw, toBase)
		}
		verdict := ""
		if m.check != nil {
			v, ok := res.median("vipd", m.test, m.key)
			if met, known := m.check(v, toHap, toBase); ok && known {
				verdict = " MET"
				if !met {
					verdict = " MISSED"
				}
			} else {
				verdict = " ?"
			}
		}
		fmt.Fprintf(tw, "%s%s\t\n", m.target, verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "medians of %d repetitions; ratios are medians of the per-repetition ratios\n", o.reps)
	if selected(o.tests, "storm") {
		// A storm either fits the listen queue or drops SYNs and costs its clients a second; a median of
		// repetitions hides the bad ones, so the worst is shown too.
		for _, n := range names {
			worst, rep := -1.0, -1
			for r, v := range res.values(n, "storm", "stormAll") {
				if v > worst {
					worst, rep = v, r
				}
			}
			if rep >= 0 {
				s := res.s[n]["storm"][rep]
				fmt.Fprintf(w, "storm, worst repetition of %s: all answered after %.0f ms, %.0f connects over 1 s, %.0f listen overflows+drops, %.0f refused or failed\n",
					n, worst, s["stormSlowSYN"], s["stormOverflows"], s["stormRefused"])
			}
		}
	}
	for _, n := range names {
		var failed, latFailed float64
		for _, v := range res.values(n, "rate", "connFailed") {
			failed += v
		}
		for _, v := range res.values(n, "latency", "latFailed") {
			latFailed += v
		}
		if failed > 0 || latFailed > 0 {
			fmt.Fprintf(w, "%s: %.0f failed short connections in the rate tests, %.0f in the latency tests\n", n, failed, latFailed)
		}
	}
}

func printRatio(w io.Writer, r ratioOK) {
	if r.ok {
		fmt.Fprintf(w, "%.2f\t", r.v)
	} else {
		fmt.Fprint(w, "n/a\t")
	}
}
