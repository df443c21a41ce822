//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipd/vipd/integration/arpwatch"
	"github.com/vipd/vipd/integration/probe"
)

// suite is the running cluster with its two observers. Scenarios share it
// and restore it rather than recreate it, to keep the run short.
type suite struct {
	env   *env
	probe *probe.Prober
	arp   *arpwatch.Watcher
	mu    sync.Mutex
	res   []result
}

// result is one trial of one scenario.
type result struct {
	scenario  string
	outage    time.Duration // longest gap between successful probes after the fault
	recovered bool
	twoMAC    time.Duration // ARP request windows answered by two MACs
	overlap   time.Duration // time two MACs' answer runs overlapped
	note      string
}

// trials is how many times the repeatable scenarios run (VIPD_IT_TRIALS).
func trials() int {
	if n, err := strconv.Atoi(os.Getenv("VIPD_IT_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// startObservers runs the VIP probe and the ARP watcher until the test ends.
func (s *suite) startObservers(t *testing.T) {
	e := s.env
	s.probe = probe.New(probe.Config{Addr: net.JoinHostPort(e.vip().String(), "6443"), HTTPS: true,
		Interval: 10 * time.Millisecond, ConnectTimeout: 50 * time.Millisecond, RequestTimeout: time.Second})
	s.arp = arpwatch.New(arpwatch.Config{
		Interface: e.bridge(), Target: e.vip(),
		SenderIP:  netip.MustParseAddr(e.clientNet + ".6"),
		SenderMAC: net.HardwareAddr{0x02, 0x76, 0x69, 0x70, 0x64, 0x06},
		Interval:  20 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.probe.Run(ctx) }()
	arpErr := make(chan error, 1)
	go func() { defer wg.Done(); arpErr <- s.arp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-arpErr; err != nil {
			t.Errorf("ARP watcher: %v", err)
		}
	})
}

// measure records a trial: the outage after fault, and the ARP view of
// [fault, now]. fault is taken just before the command that causes it is
// run, so docker's own latency counts against vipd, never for it. It fails
// the test if two MACs ever answered together or the outage broke its bound
// (a zero bound records only).
func (s *suite) measure(t *testing.T, scenario string, fault time.Time, bound time.Duration, note string) result {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // let in-flight probes around the recovery land
	now := time.Now().Add(-100 * time.Millisecond)
	o := s.probe.Measure(fault, now)
	a := s.arp.Report(fault, now)
	r := result{scenario: scenario, outage: o.Longest, recovered: o.Recovered, twoMAC: a.TwoMACTime, overlap: a.Overlap, note: note}
	s.mu.Lock()
	s.res = append(s.res, r)
	s.mu.Unlock()
	macs := make([]string, 0, len(a.Answers))
	for m, n := range a.Answers {
		macs = append(macs, fmt.Sprintf("%s:%d", s.env.nodeOfMAC(m), n))
	}
	sort.Strings(macs)
	t.Logf("%s: outage %s (recovered %t, %d failed probes, answers by %v), ARP answers %v, two-MAC windows %d (%s), overlap %s %s",
		scenario, o.Longest.Round(time.Millisecond), o.Recovered, o.Failed, o.Backends, macs, a.TwoMACWindows, a.TwoMACTime, a.Overlap, note)
	if a.TwoMACWindows > 0 || a.Overlap > 0 {
		t.Errorf("%s: SPLIT BRAIN: two MACs answered ARP for the VIP (%d windows, %s; overlap %s)", scenario, a.TwoMACWindows, a.TwoMACTime, a.Overlap)
	}
	if bound > 0 && (!o.Recovered || o.Longest > bound) {
		t.Errorf("%s: outage %s (recovered %t) exceeds the bound %s", scenario, o.Longest, o.Recovered, bound)
	}
	return r
}

// table prints the median and max outage per scenario.
func (s *suite) table() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var order []string
	by := map[string][]result{}
	for _, r := range s.res {
		if _, ok := by[r.scenario]; !ok {
			order = append(order, r.scenario)
		}
		by[r.scenario] = append(by[r.scenario], r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-44s %6s %10s %10s %12s %s\n", "scenario", "trials", "median", "max", "two-MAC max", "notes")
	for _, sc := range order {
		rs := by[sc]
		ds := make([]time.Duration, len(rs))
		var two time.Duration
		notes := []string{}
		for i, r := range rs {
			ds[i] = r.outage
			if r.twoMAC+r.overlap > two {
				two = r.twoMAC + r.overlap
			}
			if !r.recovered {
				notes = append(notes, "NOT RECOVERED")
			}
			if r.note != "" {
				notes = append(notes, r.note)
			}
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		med := ds[len(ds)/2]
		if len(ds)%2 == 0 {
			med = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
		fmt.Fprintf(&b, "%-44s %6d %10s %10s %12s %s\n", sc, len(rs), med.Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond),
			two.Round(time.Millisecond), strings.Join(dedupe(notes), "; "))
	}
	return b.String()
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
