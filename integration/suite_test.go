//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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
	// replacedLogs keeps the logs of vipd containers that recreate removed,
	// for the step-down count and the logs of a failed run.
	replacedLogs strings.Builder
	// footer lines follow the table: whole-run findings.
	footer []string
}

// addFooter adds a line under the printed table.
func (s *suite) addFooter(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.footer = append(s.footer, fmt.Sprintf(format, args...))
}

// settleQuiet is how long the probes must have succeeded without a single
// failure before an outage counts as over.
const settleQuiet = 500 * time.Millisecond

// result is one trial of one scenario.
type result struct {
	scenario  string
	outage    time.Duration // longest gap between successful probes after the fault
	recovered bool
	twoMAC    time.Duration // ARP request windows answered by two MACs
	overlap   time.Duration // time two MACs' answer runs overlapped
	note      string
}

// trials is how many times the repeatable scenarios run (VIPD_IT_TRIALS):
// 5 by default, which keeps the whole suite near 5 minutes.
func trials() int {
	if n, err := strconv.Atoi(os.Getenv("VIPD_IT_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 5
}

// startObservers runs the VIP probe and the ARP watcher until the test ends.
func (s *suite) startObservers(t *testing.T) {
	e := s.env
	s.probe = probe.New(probe.Config{Addr: net.JoinHostPort(e.vip().String(), "6443"), HTTPS: true,
		Interval: 10 * time.Millisecond, ConnectTimeout: 50 * time.Millisecond, RequestTimeout: time.Second})
	s.arp = arpwatch.New(arpwatch.Config{
		Interface: e.bridge(t), Target: e.vip(),
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

// overlapJitter is the longest overlap of two MACs' answer runs, with no
// request answered by both, that is not counted as two holders: the old
// holder's last reply and the new holder's first announcement leave two
// different veths, and the bridge may deliver them to the observer a few
// microseconds out of order. Two holders answer the same 20 ms request
// windows, which TwoMACWindows counts at any length.
const overlapJitter = time.Millisecond

// splitBrain returns a description of the time two MACs answered ARP for
// the VIP in [from, to], or "" if they never did.
func (s *suite) splitBrain(t *testing.T, from, to time.Time) string {
	a := s.arp.Report(from, to)
	if a.TwoMACWindows == 0 && a.Overlap < overlapJitter {
		return ""
	}
	return fmt.Sprintf("two MACs answered ARP for the VIP: %d request windows (%s), answer runs overlapping %s; answers %s",
		a.TwoMACWindows, a.TwoMACTime.Round(100*time.Microsecond), a.Overlap.Round(100*time.Microsecond), s.answers(t, a))
}

func (s *suite) answers(t *testing.T, a arpwatch.Report) string {
	macs := make([]string, 0, len(a.Answers))
	for m, n := range a.Answers {
		macs = append(macs, fmt.Sprintf("%s:%d", s.env.nodeOfMAC(m), n))
	}
	sort.Strings(macs)
	return strings.Join(macs, " ")
}

// measure records a trial: the outage after fault, and the ARP view of
// [fault, now]. fault is taken just before the command that causes it is
// run, so docker's own latency counts against vipd, never for it. It fails
// the test if two MACs answered ARP together or the outage broke its bound
// (a zero bound records only).
func (s *suite) measure(t *testing.T, scenario string, fault time.Time, bound time.Duration, note string) result {
	t.Helper()
	// The window must cover the whole outage: a probe that succeeded just
	// after the fault command, before the fault took effect, would let a
	// scenario's wait pass early. Wait until the VIP answers steadily.
	settle := max(bound, 30*time.Second)
	if err := poll(settle, func() error {
		if !s.probe.Settled(time.Now(), settleQuiet) {
			return fmt.Errorf("the VIP does not answer steadily (no failure for %s)", settleQuiet)
		}
		return nil
	}); err != nil {
		t.Errorf("%s: %v within %s", scenario, err, settle)
	}
	time.Sleep(200 * time.Millisecond) // let in-flight probes around the recovery land
	now := time.Now().Add(-100 * time.Millisecond)
	o := s.probe.Measure(fault, now)
	a := s.arp.Report(fault, now)
	r := result{scenario: scenario, outage: o.Longest, recovered: o.Recovered, twoMAC: a.TwoMACTime, overlap: a.Overlap, note: note}
	s.mu.Lock()
	s.res = append(s.res, r)
	s.mu.Unlock()
	t.Logf("%s: outage %s (recovered %t, %d failed probes %v, answers by %v), ARP answers [%s], two-MAC windows %d (%s), overlap %s",
		scenario, o.Longest.Round(time.Millisecond), o.Recovered, o.Failed, o.Errors, o.Backends, s.answers(t, a), a.TwoMACWindows,
		a.TwoMACTime.Round(100*time.Microsecond), a.Overlap.Round(100*time.Microsecond))
	if sb := s.splitBrain(t, fault, now); sb != "" {
		t.Errorf("%s: SPLIT BRAIN: %s%s", scenario, sb, s.leaderEvents(fault))
	}
	if bound > 0 && (!o.Recovered || o.Longest > bound) {
		t.Errorf("%s: client outage %s (recovered %t) exceeds the bound %s%s", scenario, o.Longest.Round(time.Millisecond), o.Recovered, bound, s.leaderEvents(fault))
	}
	return r
}

// record adds a result measured another way (formation time).
func (s *suite) record(r result) {
	s.mu.Lock()
	s.res = append(s.res, r)
	s.mu.Unlock()
}

// scenario runs one scenario as a subtest. Over its whole run, not only
// the measured windows, two nodes must never answer ARP for the VIP. When it
// fails, the report shows every node's state, `vipd members` and last log
// lines at the moment of the failure.
func (s *suite) scenario(t *testing.T, name string, fn func(*testing.T, *suite)) bool {
	return t.Run(name, func(t *testing.T) {
		start := scenarioStart(t)
		t.Cleanup(func() { // registered first: runs last, after the split-brain check
			if t.Failed() {
				s.dump(t)
			}
		})
		t.Cleanup(func() {
			if sb := s.splitBrain(t, start, time.Now()); sb != "" {
				t.Errorf("SPLIT BRAIN during the scenario (%s): %s", time.Since(start).Round(time.Second), sb)
			}
		})
		fn(t, s)
	})
}

// dump logs what an operator would look at: each node's container state,
// `vipd members` as that node sees it, and its last log lines; then what
// the observers saw last.
func (s *suite) dump(t *testing.T) {
	e := s.env
	var b strings.Builder
	fmt.Fprintf(&b, "state at the failure (%s UTC, host load average %s):\n", time.Now().UTC().Format("15:04:05.000"), loadavg())
	for _, n := range lbs {
		st := e.state(n)
		fmt.Fprintf(&b, "--- %s: container %s\n", n, st)
		if st == "running" {
			out, err := e.cli(n, "members")
			if err != nil {
				fmt.Fprintf(&b, "vipd members: %v\n", err)
			} else {
				fmt.Fprintf(&b, "$ vipd members\n%s", out)
			}
		}
		logs, _ := e.docker("logs", "--tail", "25", e.container(n))
		fmt.Fprintf(&b, "last log lines:\n%s\n", logs)
	}
	h := s.arp.Holder(time.Now().Add(-300 * time.Millisecond))
	last, ok := s.probe.LastOK()
	fmt.Fprintf(&b, "--- observers: ARP answered by %q in the last 300 ms; last good probe %s ago (ok %t, answered by %s)",
		e.nodeOfMAC(h), time.Since(last.Start).Round(time.Millisecond), ok, last.Backend)
	t.Log(b.String())
}

// logs returns the vipd logs of the whole run: the replaced containers'
// and the current ones'.
func (s *suite) logs() string {
	out, err := s.env.compose(time.Minute, "logs", "--no-color", "lb1", "lb2", "lb3")
	if err != nil {
		out += fmt.Sprintf("\n(docker-compose logs: %v)\n", err)
	}
	return s.replacedLogs.String() + out
}

// saveLogs writes the vipd logs of a failed run next to the tests.
func (s *suite) saveLogs(t *testing.T) {
	path := filepath.Join(s.env.root, "integration", "failed-run.log")
	if err := os.WriteFile(path, []byte(s.logs()), 0o644); err != nil {
		t.Logf("write %s: %v", path, err)
		return
	}
	t.Logf("full vipd logs of this run: %s", path)
}

// logStepDowns lists the times a Raft leader stepped down because it could
// not reach a quorum within its lease. The partition and no-quorum scenarios
// cause some on purpose; any others are leader flaps (a loaded machine with
// a short lease), to compare with the scenario start times above.
func (s *suite) logStepDowns(t *testing.T) {
	var lines []string
	for _, l := range strings.Split(s.logs(), "\n") {
		if !strings.Contains(l, "failed to contact quorum of nodes, stepping down") {
			continue
		}
		node, at := "", ""
		if i := strings.Index(l, "|"); i > 0 {
			node = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l[:i]), s.env.project+"_"), "_1")
		}
		if i := strings.Index(l, "time="); i >= 0 && len(l) >= i+28 {
			at = l[i+16 : i+28]
		}
		lines = append(lines, at+" "+node)
	}
	sort.Strings(lines)
	t.Logf("Raft leaders stepping down for lack of quorum contact (lease), UTC: %d %v; host load average now %s", len(lines), lines, loadavg())
	s.addFooter("Raft lease step-downs (a leader could not reach a quorum in time): %d; up to one per trial of 05 (the cut-off leader) and 10 (the resumed leader) and one in 08 are expected, more are leader flaps", len(lines))
}

// leaderEvents explains an unexpected leader: the leadership events every
// node logged since a time (lease step-downs, transfers, elections won), and
// the host's load, since a short Raft lease on a loaded 2-core machine makes
// leaders step down on their own.
func (s *suite) leaderEvents(since time.Time) string {
	var ev []string
	for _, n := range lbs {
		out, _ := s.env.docker("logs", "--since", since.Add(-time.Second).UTC().Format(time.RFC3339Nano), s.env.container(n))
		for _, l := range strings.Split(out, "\n") {
			for _, m := range []string{"failed to contact quorum of nodes, stepping down", "election won", "leadership transferred", "VIP released", "VIP acquired"} {
				if strings.Contains(l, m) {
					at := ""
					if i := strings.Index(l, "time="); i >= 0 && len(l) >= i+28 {
						at = l[i+16 : i+28]
					}
					what := m
					if i := strings.Index(l, " why="); i >= 0 {
						why := l[i+5:]
						if q, ok := strings.CutPrefix(why, `"`); ok {
							why, _, _ = strings.Cut(q, `"`)
						} else {
							why, _, _ = strings.Cut(why, " ")
						}
						what += " (" + why + ")"
					}
					ev = append(ev, at+" "+n+" "+what)
				}
			}
		}
	}
	sort.Strings(ev)
	return fmt.Sprintf("\n  leadership events (UTC) from %s (1 s before the step):\n    %s\n  host load average: %s",
		since.Add(-time.Second).UTC().Format("15:04:05.000"), strings.Join(ev, "\n    "), loadavg())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(b))
}

// scenarioStart logs the wall-clock start of a scenario, to relate vipd's
// own logs (UTC timestamps) to it.
func scenarioStart(t *testing.T) time.Time {
	now := time.Now()
	t.Logf("started at %s UTC, host load average %s", now.UTC().Format("15:04:05.000"), loadavg())
	return now
}

// restore brings every lb back after a failed scenario, whatever it left
// behind: paused, stopped, cut off or with its upstreams blocked. If the
// cluster does not become stable, the nodes are recreated, so that the
// remaining scenarios still run on a fresh cluster.
func (s *suite) restore(t *testing.T) {
	t.Helper()
	e := s.env
	for _, n := range lbs {
		switch st := e.state(n); st {
		case "paused":
			t.Logf("restore: unpausing %s", n)
			e.docker("unpause", e.container(n))
		case "exited", "created":
			code, _ := e.docker("inspect", "-f", "{{.State.ExitCode}}", e.container(n))
			t.Logf("restore: starting %s (%s, exit code %s)", n, st, code)
			e.docker("start", e.container(n))
		}
		if err := e.flushRules(n); err != nil {
			t.Logf("restore: flush iptables of %s: %v", n, err)
		}
	}
	err := poll(30*time.Second, func() error { _, err := s.stable(t, lbs); return err })
	if err == nil {
		return
	}
	t.Logf("restore: the cluster did not recover within 30 s (%v): recreating lb1, lb2, lb3", err)
	s.recreate(t)
}

// recreate replaces the three vipd containers (fresh Raft state, current
// e.garp) and waits for the new cluster. The old ones are removed first:
// `up --force-recreate` would replace them one at a time, and the first new,
// empty node would join what is left of the old cluster.
func (s *suite) recreate(t *testing.T) string {
	t.Helper()
	e := s.env
	out, _ := e.compose(time.Minute, "logs", "--no-color", "lb1", "lb2", "lb3")
	fmt.Fprintf(&s.replacedLogs, "=== logs of the nodes replaced at %s UTC\n%s=== end of the replaced nodes' logs\n", time.Now().UTC().Format("15:04:05.000"), out)
	e.mustCompose(t, 2*time.Minute, "rm", "--stop", "--force", "-v", "lb1", "lb2", "lb3")
	e.mustCompose(t, 3*time.Minute, "up", "-d", "--no-build", "--no-deps", "lb1", "lb2", "lb3")
	e.forgetMACs()
	s.learnMACs(t)
	return s.waitStable(t, "recreated cluster", lbs, 120*time.Second)
}

// learnMACs caches the lbs' MACs, so ARP answers can be named.
func (s *suite) learnMACs(t *testing.T) {
	for _, n := range lbs {
		s.env.mac(t, n)
	}
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
	fmt.Fprintf(&b, "%-44s %6s %10s %10s %12s  %s\n", "scenario", "trials", "median", "max", "two-MAC max", "notes")
	for _, sc := range order {
		rs := by[sc]
		ds := make([]time.Duration, len(rs))
		var two time.Duration
		notes := []string{}
		for i, r := range rs {
			ds[i] = r.outage
			two = max(two, r.twoMAC+r.overlap)
			if !r.recovered {
				notes = append(notes, "NOT RECOVERED")
			}
			if r.note != "" {
				notes = append(notes, r.note)
			}
		}
		fmt.Fprintf(&b, "%-44s %6d %10s %10s %12s  %s\n", sc, len(rs), median(ds).Round(time.Millisecond),
			slicesMax(ds).Round(time.Millisecond), two.Round(time.Millisecond), strings.Join(dedupe(notes), "; "))
	}
	for _, f := range s.footer {
		b.WriteString(f + "\n")
	}
	return b.String()
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = append([]time.Duration(nil), ds...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	if len(ds)%2 == 0 {
		return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
	}
	return ds[len(ds)/2]
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// medianOf is the median outage recorded so far for a scenario.
func (s *suite) medianOf(scenario string) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ds []time.Duration
	for _, r := range s.res {
		if r.scenario == scenario {
			ds = append(ds, r.outage)
		}
	}
	return median(ds), len(ds) > 0
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
