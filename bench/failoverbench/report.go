package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// table is one scenario under one setting.
type table struct {
	setting  raftSetting
	scenario string
	trials   []trial
	errors   []string
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func ms(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// medMax is the median and maximum; never-recovered values (-1) count as the maximum.
func medMax(vals []time.Duration) string {
	if len(vals) == 0 {
		return "n/a"
	}
	v := slices.Clone(vals)
	never := 0
	for i := range v {
		if v[i] < 0 {
			never++
			v[i] = time.Duration(1<<62 - 1)
		}
	}
	slices.Sort(v)
	f := func(d time.Duration) string {
		if d == time.Duration(1<<62-1) {
			return "never"
		}
		return ms(d)
	}
	return f(v[len(v)/2]) + " / " + f(v[len(v)-1])
}

func sum(vals []time.Duration) time.Duration {
	var s time.Duration
	for _, v := range vals {
		s += v
	}
	return s
}

func printTables(w io.Writer, tables []table) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "setting\tscenario\ttrials\tclient outage med/max\tfault→new node med/max\tARP 2 MACs total (max)\tARP overlap total\tVIP on 2 live lo total\t")
	for _, t := range tables {
		var out, nn, arp, ov, lo []time.Duration
		for _, tr := range t.trials {
			out = append(out, tr.outage)
			nn = append(nn, tr.toNewNode)
			arp = append(arp, tr.arpTwo)
			ov = append(ov, tr.arpOverlap)
			lo = append(lo, tr.loTwo)
		}
		name := t.setting.name
		if t.setting.heartbeat > 0 {
			name += fmt.Sprintf(" (%s/%s/%s)", t.setting.heartbeat, t.setting.election, t.setting.lease)
		}
		maxArp := time.Duration(0)
		if len(arp) > 0 {
			maxArp = slices.Max(arp)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s (%s)\t%s\t%s\t\n", name, t.scenario, len(t.trials),
			medMax(out), medMax(nn), ms(sum(arp)), ms(maxArp), ms(sum(ov)), ms(sum(lo)))
	}
	tw.Flush()
	for _, t := range tables {
		for _, e := range t.errors {
			fmt.Fprintf(w, "%s / %s: %s\n", t.setting.name, t.scenario, e)
		}
	}
	fmt.Fprintln(w, `
targets (issue 4), default: crash med ≤ 300 ms, max ≤ 600 ms; graceful med ≤ 50 ms; partition 0 ms two holders and
outage within the crash bound; backends down: new node within fall (2 × 200 ms) + 100 ms = 500 ms.
fast: crash med ≤ 100 ms; partition 0 ms two holders and ≤ 300 ms outage.
"client outage" is the longest gap between successful probes (≈10 ms when nothing is noticed); "ARP 2 MACs" sums
the 10 ms request windows in which two MACs replied; "overlap" the time two MACs were both in unbroken runs of
answers (announcements included); "VIP on 2 live lo" the time two nodes with a running vipd had the VIP on lo.`)
}
