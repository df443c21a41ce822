package handover

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// The load issue 12 asks for: per generation of held connections (one generation opened through each holder
// the test drains), a thousand idle connections and twenty streams, and a new connection every 20 ms.
const (
	idleConns     = 1000
	streamConns   = 20
	probeInterval = 20 * time.Millisecond
)

// TestPlannedMoves runs three vipd agents with a cluster key in front of echo backends and moves the VIP the
// planned ways an operator does, with 1,020 connections held through each holder:
//
//  1. `vipd leave` on the holder H0: a peer H1 takes the VIP; H0 keeps serving generation A (opened through
//     it) while H1 forwards their packets to it.
//  2. Generation B is opened through H1. Then a rolling restart, each node SIGTERMed, waited for, restarted
//     on its data dir and the cluster waited for: the third node F; the holder H1, whose successor forwards
//     to H1, which still forwards to H0 (a chain); and H0, already draining, which a SIGTERM must not cut.
//
// A draining node stays until its connections are gone and then exits on its own, long before
// -drain-timeout (2m). The test lets it: after checking a generation end to end (every stream's bytes back
// and checksummed at both ends, every idle connection answering a ping), the test closes that generation's
// connections as finished clients would (FIN, the backend's FIN back), and measures how soon the node that
// carried them exits. So H0 exits once generation A is closed, H1 once generation B is, and each is
// restarted then.
//
// Asserted: no held connection reset or otherwise ended by anyone but the client, no byte lost, every idle
// connection answers a ping after each move, no probe connection (one every 20 ms, all along) failed,
// `vipd leave` exits 0 once the VIP is handed over (not after the drain), each drained node exited cleanly
// within 30 s of its last connection's close. With -handover-drain=false the leave alone must reset held
// connections — the behaviour before hand-over drains, and the proof that this test can fail. The IPv6 case
// runs the same moves with an IPv6 VIP (NDP, the ip6 rules) over the same IPv4 cluster.
//
// The figures (moves, resets, bytes, probes, exits) are logged as a table starting with FIGURES.
func TestPlannedMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("a few minutes of a three-node cluster in network namespaces")
	}
	if syscall.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	raiseFileLimit(t, 4*(idleConns+streamConns)+4096)
	for _, tc := range []struct {
		name  string
		fam   family
		drain bool
	}{
		{"IPv4/handover-drain", ipv4, true},
		{"IPv4/handover-drain=false", ipv4, false},
		{"IPv6/handover-drain", ipv6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, tc.fam, fmt.Sprintf("-handover-drain=%v", tc.drain))
			if tc.drain {
				s.drained(t)
			} else {
				s.undrained(t)
			}
		})
	}
}

// raiseFileLimit makes room for want descriptors: the test holds both ends of every connection. The agents
// inherit the limit (vipd derives -max-conns from it).
func raiseFileLimit(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = min(max(want, lim.Cur), lim.Max)
	if lim.Cur < want {
		lim.Max, lim.Cur = want, want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("RLIMIT_NOFILE below %d and cannot be raised: %v", want, err)
	}
}

// scenario is one run: the cluster, the probe, the generations of held connections and the figures.
type scenario struct {
	r     *rig
	start time.Time
	probe probe
	stop  func() // ends the probe

	moves []moveFigures
	gens  []*generation
	exits []exitFigures
}

func newScenario(t *testing.T, fam family, flags ...string) *scenario {
	t.Helper()
	s := &scenario{r: startCluster(t, fam, flags...)}
	h0 := s.r.waitStable(90 * time.Second)
	t.Logf("cluster stable, %s holds the VIP", h0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.probe.run(ctx, s.r.client, s.r.fam.addr(), probeInterval, 16) })
	s.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(s.stop)
	s.start = time.Now()
	return s
}

// generation is the connections opened through one holder.
type generation struct {
	name  string
	via   string
	conns []*held
	stop  chan struct{} // ends the streams' writers
	wg    sync.WaitGroup
	once  sync.Once
	pings atomic.Int64

	lastClose time.Time
}

// open opens a generation through the VIP, 32 connections at a time, and checks that the holder via carried
// every one of them.
func (s *scenario) open(t *testing.T, name, via string) *generation {
	t.Helper()
	g := &generation{name: name, via: via, stop: make(chan struct{})}
	t.Cleanup(func() {
		g.stopWriters()
		for _, h := range g.conns {
			h.c.Close()
		}
		g.wg.Wait()
	})
	var mu sync.Mutex
	var errs []error
	jobs := make(chan int)
	var openers sync.WaitGroup
	for range 32 {
		openers.Go(func() {
			for i := range jobs {
				seed := uint64(len(s.gens))<<32 | uint64(i)
				h, err := openHeld(s.r.client, s.r.fam.addr(), i < streamConns, seed, g.stop, &g.wg)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					g.conns = append(g.conns, h)
				}
				mu.Unlock()
			}
		})
	}
	t0 := time.Now()
	for i := range idleConns + streamConns {
		jobs <- i
	}
	close(jobs)
	openers.Wait()
	if len(errs) > 0 {
		t.Fatalf("generation %s: %d of %d connections failed to open, e.g. %v", name, len(errs), idleConns+streamConns, errs[0])
	}
	for _, h := range g.conns {
		if h.node != via {
			t.Fatalf("generation %s: a connection went through %s, not the holder %s", name, h.node, via)
		}
	}
	s.gens = append(s.gens, g)
	t.Logf("generation %s: %d connections open through %s in %s", name, len(g.conns), via, time.Since(t0).Round(time.Millisecond))
	return g
}

func (g *generation) stopWriters() { g.once.Do(func() { close(g.stop) }) }

// broken counts the connections that ended before the test closed them, by how.
func (g *generation) broken() map[string]int {
	out := map[string]int{}
	for _, h := range g.conns {
		if why := h.broken(); why != "" {
			out[why]++
		}
	}
	return out
}

func (g *generation) resets() int { return g.broken()["reset"] }

// check asserts, after what, that the generation is whole: every stream carries at least 32 KiB more both
// ways (so it is carried now, not only before), and every idle connection answers a ping.
func (g *generation) check(t *testing.T, what string) {
	t.Helper()
	from := map[*held]int64{}
	for _, h := range g.conns {
		if h.stream {
			from[h] = h.read.Load()
		}
	}
	errs := g.pingAll()
	deadline := time.Now().Add(15 * time.Second)
	for h, n := range from {
		for h.read.Load() < n+32<<10 && !h.closed() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling a counter, bounded by deadline
		}
		if h.read.Load() < n+32<<10 && !h.closed() {
			errs = append(errs, fmt.Errorf("stream %d: %d bytes came back in 15 s", h.serial, h.read.Load()-n))
		}
	}
	if b := g.broken(); len(b) > 0 {
		t.Errorf("generation %s %s: connections ended: %v", g.name, what, b)
	}
	if len(errs) > 0 {
		t.Errorf("generation %s %s: %d connections not working, e.g. %v", g.name, what, len(errs), errs[0])
	}
}

// pingAll pings every idle connection of the generation, 32 at a time, and returns the failures.
func (g *generation) pingAll() []error {
	var mu sync.Mutex
	var errs []error
	jobs := make(chan *held)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for h := range jobs {
				err := h.ping(5 * time.Second)
				g.pings.Add(1)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("idle %d: %w", h.serial, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, h := range g.conns {
		if !h.stream && !h.closed() {
			jobs <- h
		}
	}
	close(jobs)
	wg.Wait()
	return errs
}

// finish ends the generation as finished clients would (held.finish: every byte back, FIN both ways,
// counts and checksums equal at both ends), 32 at a time, and records when the last one closed.
func (g *generation) finish(t *testing.T, b *backend) {
	t.Helper()
	g.stopWriters()
	var mu sync.Mutex
	var errs []string
	jobs := make(chan *held)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for h := range jobs {
				if err := h.finish(b, 15*time.Second); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%d: %v", h.serial, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, h := range g.conns {
		jobs <- h
	}
	close(jobs)
	wg.Wait()
	g.lastClose = time.Now()
	if len(errs) > 0 {
		sort.Strings(errs)
		t.Errorf("generation %s: %d connections did not end whole, e.g. %v", g.name, len(errs), errs[:min(5, len(errs))])
	}
}

// streamed is the bytes the generation's connections sent (every one came back, finish checks).
func (g *generation) streamed() int64 {
	var n int64
	for _, h := range g.conns {
		n += h.written.Load()
	}
	return n
}

// moveFigures is one planned move of the VIP, as the client and the admin API saw it.
type moveFigures struct {
	how, from, to string
	moved         time.Duration // until the successor's status said it holds the VIP
	firstServed   time.Duration // until a probe was first served by the successor
	probes, fails int           // probes started from the move to 3 s after it
	slowest       time.Duration
}

// move does the move and measures it: the VIP must end on another node and new connections must reach it.
func (s *scenario) move(t *testing.T, how string, from *node, do func()) string {
	t.Helper()
	t0 := time.Now()
	do()
	m := moveFigures{how: how, from: from.name}
	testutil.WaitFor(t, 20*time.Second, "another node to hold the VIP after "+how, func() bool {
		m.to = s.r.holder()
		return m.to != "" && m.to != from.name
	})
	m.moved = time.Since(t0)
	testutil.WaitFor(t, 10*time.Second, "a probe served by "+m.to, func() bool {
		for _, p := range s.probe.since(t0) {
			if p.err == nil && p.node == m.to {
				m.firstServed = p.start.Add(p.took).Sub(t0)
				return true
			}
		}
		return false
	})
	testutil.WaitFor(t, 10*time.Second, "3 s of probes after the move", func() bool {
		ps := s.probe.since(t0)
		return len(ps) > 0 && time.Since(t0) > 3*time.Second+time.Second
	})
	for _, p := range s.probe.since(t0) {
		if p.start.After(t0.Add(3 * time.Second)) {
			continue
		}
		m.probes++
		m.slowest = max(m.slowest, p.took)
		if p.err != nil {
			m.fails++
		}
	}
	s.moves = append(s.moves, m)
	t.Logf("%s: the VIP moved from %s to %s in %s", how, m.from, m.to, m.moved.Round(time.Millisecond))
	return m.to
}

// exitFigures is a drained node's end.
type exitFigures struct {
	node      string
	gen       string
	afterLast time.Duration // from its generation's last close to the process's exit
	drainOver string        // the agent's "drain over" log line's reason
}

// waitExit waits for the node's agent to exit after g, the last connections through it, closed, and checks
// that it exited cleanly and soon: the drain ends when no connection is left, not at -drain-timeout.
func (s *scenario) waitExit(t *testing.T, n *node, g *generation) {
	t.Helper()
	p := n.proc()
	select {
	case <-p.Exited():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s still runs 60 s after the last connection through it closed", n.name)
	}
	e := exitFigures{node: n.name, afterLast: time.Since(g.lastClose), gen: g.name}
	if err := p.Err(); err != nil {
		t.Errorf("%s exited with %v", n.name, err)
	}
	if e.afterLast > 30*time.Second {
		t.Errorf("%s exited %s after its last connection closed", n.name, e.afterLast.Round(time.Millisecond))
	}
	if ls := n.logLines(`msg="drain over"`); len(ls) > 0 {
		e.drainOver = ls[len(ls)-1]
		if _, why, ok := strings.Cut(e.drainOver, "why="); ok {
			e.drainOver, _, _ = strings.Cut(why, " epoch=")
		}
		if !strings.Contains(e.drainOver, "no connection left") {
			t.Errorf("%s's drain ended: %s", n.name, e.drainOver)
		}
	} else {
		t.Errorf("%s logged no end of its drain", n.name)
	}
	s.exits = append(s.exits, e)
}

// stopAndWait is the first half of a rolling restart's step: SIGTERM and the exit (a node that drains nothing
// exits within seconds).
func stopAndWait(t *testing.T, n *node) {
	t.Helper()
	n.signalStop(t)
	select {
	case <-n.proc().Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30 s of SIGTERM, with no connection through it", n.name)
	}
	if err := n.proc().Err(); err != nil {
		t.Errorf("%s exited with %v after SIGTERM", n.name, err)
	}
}

// leaveResult is how `vipd leave` ended.
type leaveResult struct {
	code int
	out  string
	took time.Duration
}

// leaveAsync runs `vipd leave` on n as an operator would, and returns a channel that receives its result:
// the move is measured meanwhile.
func (s *scenario) leaveAsync(n *node) <-chan leaveResult {
	out := make(chan leaveResult, 1)
	go func() {
		t0 := time.Now()
		code, text := n.vipctl(s.r.bin, "leave")
		out <- leaveResult{code: code, out: text, took: time.Since(t0)}
	}()
	return out
}

// drained is the scenario with hand-over drains on.
func (s *scenario) drained(t *testing.T) {
	r := s.r
	h0 := r.node(r.holder())
	genA := s.open(t, "A", h0.name)
	genA.check(t, "before any move")

	// Move 1: `vipd leave` on the holder. It answers once the VIP is handed over, not after the drain.
	var left <-chan leaveResult
	h1 := r.node(s.move(t, "vipd leave on "+h0.name, h0, func() { left = s.leaveAsync(h0) }))
	select {
	case res := <-left:
		t.Logf("vipd leave on %s: exit %d after %s: %s", h0.name, res.code, res.took.Round(time.Millisecond), res.out)
		if res.code != 0 || !strings.Contains(res.out, "handed the VIP over") {
			t.Errorf("vipd leave on a draining holder: exit %d, %q; want exit 0, the VIP handed over", res.code, res.out)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("vipd leave on %s had not returned 15 s after the move", h0.name)
	}
	genA.check(t, "after the leave")
	if !h0.running() {
		t.Fatalf("%s exited after the leave with generation A's connections open", h0.name)
	}
	genB := s.open(t, "B", h1.name)

	// The rolling restart. F first: nothing through it.
	var f *node
	for _, n := range r.nodes {
		if n != h0 && n != h1 {
			f = n
		}
	}
	stopAndWait(t, f)
	f.start(t)
	r.waitStable(60 * time.Second)
	genA.check(t, "after "+f.name+"'s restart")
	genB.check(t, "after "+f.name+"'s restart")

	// The holder H1, whose successor must forward to H1, which forwards to H0.
	h2 := r.node(s.move(t, "SIGTERM on the holder "+h1.name, h1, func() { h1.signalStop(t) }))
	genA.check(t, "after "+h1.name+"'s SIGTERM")
	genB.check(t, "after "+h1.name+"'s SIGTERM")
	for _, n := range []*node{h0, h1} {
		if !n.running() {
			t.Fatalf("%s exited while connections through it are open", n.name)
		}
	}

	// H0, draining since the leave: a SIGTERM changes nothing; it exits once generation A is closed.
	h0.signalStop(t)
	genA.check(t, "after "+h0.name+"'s SIGTERM while draining")
	if !h0.running() {
		t.Fatalf("%s exited on SIGTERM while draining generation A", h0.name)
	}
	genA.finish(t, r.backend)
	s.waitExit(t, h0, genA)
	h0.start(t)
	r.waitStable(60 * time.Second)
	genB.check(t, "after "+h0.name+"'s restart")

	// H1, draining since its SIGTERM, exits once generation B is closed.
	genB.finish(t, r.backend)
	s.waitExit(t, h1, genB)
	h1.start(t)
	last := r.waitStable(60 * time.Second)

	s.stop()
	s.report(t, fmt.Sprintf("%s VIP, handover-drain on; VIP now on %s (successor of %s was %s)", s.r.fam.name, last, h1.name, h2.name))
	for _, m := range s.moves {
		if m.fails > 0 {
			t.Errorf("%s: %d of %d probes failed", m.how, m.fails, m.probes)
		}
	}
	if fails := s.probeFailures(); len(fails) > 0 {
		t.Errorf("%d probe connections failed: %v", len(fails), fails[:min(10, len(fails))])
	}
}

// undrained is the leave with hand-over drains off: the held connections are reset by the successor, which
// knows none of them.
func (s *scenario) undrained(t *testing.T) {
	r := s.r
	h0 := r.node(r.holder())
	genA := s.open(t, "A", h0.name)
	genA.check(t, "before any move")
	s.move(t, "vipd leave on "+h0.name, h0, func() { s.leaveAsync(h0) })
	errs := genA.pingAll()
	testutil.WaitFor(t, 15*time.Second, "every stream to end", func() bool {
		for _, h := range genA.conns {
			if h.stream && !h.closed() {
				return false
			}
		}
		return true
	})
	s.stop()
	s.report(t, s.r.fam.name+" VIP, handover-drain=false")
	if genA.resets() == 0 {
		t.Errorf("no connection reset by the leave with -handover-drain=false (%d pings failed): the test cannot tell", len(errs))
	}
}

// probeFailures lists every failed probe.
func (s *scenario) probeFailures() []string {
	var out []string
	for _, p := range s.probe.since(time.Time{}) {
		if p.err != nil {
			out = append(out, fmt.Sprintf("%s +%s: %v", p.start.Format("15:04:05.000"), p.start.Sub(s.start).Round(time.Millisecond), p.err))
		}
	}
	return out
}

// report logs the figures in a form that can be quoted.
func (s *scenario) report(t *testing.T, title string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "FIGURES %s (-drain-timeout %s):\n", title, drainTimeout)
	fmt.Fprintf(&b, "  %-34s %6s %6s %8s %12s %14s\n", "generation", "conns", "resets", "other", "idle pings", "bytes (each way)")
	for _, g := range s.gens {
		other := 0
		for why, n := range g.broken() {
			if why != "reset" {
				other += n
			}
		}
		fmt.Fprintf(&b, "  %-34s %6d %6d %8d %12d %14d\n", g.name+" via "+g.via, len(g.conns), g.resets(), other, g.pings.Load(), g.streamed())
	}
	fmt.Fprintf(&b, "  %-34s %10s %12s %8s %8s %10s\n", "move", "VIP moved", "first served", "probes", "failed", "slowest")
	for _, m := range s.moves {
		fmt.Fprintf(&b, "  %-34s %10s %12s %8d %8d %10s\n", m.how+" → "+m.to, m.moved.Round(time.Millisecond),
			m.firstServed.Round(time.Millisecond), m.probes, m.fails, m.slowest.Round(time.Millisecond))
	}
	for _, e := range s.exits {
		fmt.Fprintf(&b, "  %s exited %s after generation %s's last close (drain over: %s)\n", e.node, e.afterLast.Round(time.Millisecond), e.gen, e.drainOver)
	}
	all := s.probe.since(time.Time{})
	var slowest time.Duration
	for _, p := range all {
		slowest = max(slowest, p.took)
	}
	fmt.Fprintf(&b, "  probes: %d over %s (one every %s), %d failed, %d skipped (generator behind), slowest %s",
		len(all), time.Since(s.start).Round(time.Second), probeInterval, len(s.probeFailures()), s.probe.skipped, slowest.Round(time.Millisecond))
	t.Log(b.String())
}
