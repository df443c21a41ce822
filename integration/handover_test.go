//go:build integration

package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/integration/probe"
)

// Issue 12 in the compose setup: planned VIP moves keep every connection.
const (
	handoverIdle    = 1000 // idle keep-alive TLS connections through the VIP, each asked once after the move
	handoverStreams = 20   // streams of checked bytes through the VIP (probe.StreamSource)
	// handoverWatch is how long the streams must keep flowing after a move, through the forwarding.
	handoverWatch = 3 * time.Second
	// drainedExit bounds the old holder's exit after its last connection closed: its drain notices within
	// 100 ms, then it leaves the cluster.
	drainedExit = 20 * time.Second
	// dialers open and ask the idle connections: few, so the TLS handshakes do not starve the nodes of the
	// CPU (on two cores a burst can stall a leader past its 50 ms lease).
	dialers = 4
)

// TestHandoverCompose: the three-node compose cluster with 1,000 idle keep-alive connections and 20
// streaming ones through the VIP before each move: `vipd leave` on the holder, then a rolling restart of all
// three nodes (docker stop, i.e. SIGTERM, then start). After each move every idle connection must still
// answer, every stream must go on with every byte checked, the new connections of the suite's probe must be
// served (within the graceful-stop bound), and the old holder must exit 0 once the test closed its
// connections. The same leave with -handover-drain=false must reset them, so the test can fail.
func TestHandoverCompose(t *testing.T) {
	raiseNoFile(t)
	e := newEnv(t)
	s := &suite{env: e}
	var sum strings.Builder
	t.Cleanup(func() {
		if t.Failed() {
			s.saveLogs(t)
		}
		for _, p := range e.down() {
			t.Errorf("cleanup of %s: %s", e.project, p)
		}
	})
	removeOnSignal(t, e, s)
	e.build(t)
	e.mustCompose(t, 2*time.Minute, "up", "-d", "--no-build", "api1", "api2", "api3")
	s.startObservers(t)
	e.mustCompose(t, 2*time.Minute, "up", "-d", "--no-build", "lb1", "lb2", "lb3")
	s.learnMACs(t)
	s.waitStable(t, "cluster start", lbs, 90*time.Second)

	fmt.Fprintf(&sum, "=== planned VIP moves with %d idle and %d streaming connections through the VIP: %s ===\n", handoverIdle, handoverStreams, e.project)
	fmt.Fprintf(&sum, "%-40s %-7s %-7s %6s %6s %9s %10s %12s\n", "move", "holder", "next", "idle", "reset", "streams", "new conns", "old exits")
	for _, how := range []string{"leave", "lb1", "lb2", "lb3"} {
		handoverAttempts(t, s, how, true, &sum)
	}

	// The draining old holder crashes: its flows must be reset by the new holder (which stops forwarding once
	// gossip no longer sees the drainer alive), not hang.
	handoverCrash(t, s, &sum)

	// Control: the same leave without drains resets the connections.
	e.drain = false
	s.recreate(t)
	handoverAttempts(t, s, "leave", false, &sum)
	t.Log("\n" + sum.String())
	report.add("\n" + sum.String())
}

// moveAttempts bounds the tries at one move: a try that failed while a Raft leader stepped down for lack of
// quorum contact (the host stalled it past its lease) saw the VIP move without a plan, which resets
// connections by design, and measured the host, not the hand-over; it is run again. A try that passed
// counts, step-downs or not. On a quiet host the first try counts.
const moveAttempts = 4

// handoverAttempts runs handoverMove until a try passes or fails without a lease step-down to explain it,
// and reports that try's problems.
func handoverAttempts(t *testing.T, s *suite, how string, drain bool, sum *strings.Builder) {
	t.Helper()
	for try := 1; try <= moveAttempts; try++ {
		from := time.Now()
		row, problems := handoverMove(t, s, how, drain)
		if downs := stepDownsSince(s.env, from); len(problems) > 0 && len(downs) > 0 {
			t.Logf("%s, try %d discarded: a leader stepped down for lack of quorum contact (host load %s) at %v, an unplanned move; its problems were: %v",
				how, try, loadavg(), downs, problems)
			continue
		}
		sum.WriteString(row)
		for _, p := range problems {
			t.Error(p)
		}
		return
	}
	t.Errorf("%s: every one of %d tries was disturbed by lease step-downs (host load %s)", how, moveAttempts, loadavg())
}

// stepDownsSince lists the lease step-downs in the nodes' logs since from.
func stepDownsSince(e *env, from time.Time) []string {
	var downs []string
	for _, n := range lbs {
		logs, _ := e.docker("logs", "--since", from.UTC().Format(time.RFC3339Nano), e.container(n))
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, stepDownOn) {
				at := ""
				if m := logTimeRE.FindStringSubmatch(l); m != nil {
					at = m[1]
				}
				downs = append(downs, n+" "+at)
			}
		}
	}
	return downs
}

// handoverMove opens the connections through the current holder, makes one planned move (how: "leave" runs
// vipd leave on the holder; a node name stops that node with SIGTERM), checks the connections and restarts
// the stopped node. With drain, no connection may break; without, most must. It returns what went wrong.
func handoverMove(t *testing.T, s *suite, how string, drain bool) (row string, problems []string) {
	e := s.env
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	holder := s.waitStable(t, "before the move", lbs, 60*time.Second)
	target := how
	if how == "leave" {
		target = holder
	}
	fl, err := openHandoverFlows(t, e.vip().String()+":6443")
	if err != nil {
		return "", []string{fmt.Sprintf("%s: before the move: %v", how, err)}
	}
	defer fl.close()

	from := time.Now()
	stopped := make(chan error, 1)
	if how == "leave" {
		out, err := e.cli(target, "leave")
		if err != nil {
			t.Fatalf("vipd leave on %s: %v\n%s", target, err, out)
		}
		if drain && !strings.Contains(out, "serves the open connections") {
			errorf("vipd leave on the holder %s with connections open: %q, want it to say that it drains", target, strings.TrimSpace(out))
		}
		stopped <- nil
	} else {
		go func() { _, err := e.docker("stop", "-t", "300", e.container(target)); stopped <- err }()
	}
	next := s.waitStable(t, fmt.Sprintf("after the move (%s)", how), others(target), 30*time.Second)
	if err := poll(30*time.Second, func() error {
		if !s.probe.Settled(time.Now(), settleQuiet) {
			return fmt.Errorf("the VIP does not answer steadily")
		}
		return nil
	}); err != nil {
		errorf("%s: new connections through the VIP: %v", how, err)
	}
	outage := s.probe.Measure(from, time.Now()).Longest
	if outage > gracefulBound {
		errorf("%s: new connections through the VIP failed for %s, more than the graceful-stop bound %s", how, outage, gracefulBound)
	}

	watchFrom := fl.verified()
	if err := poll(handoverWatch+10*time.Second, func() error {
		if got := fl.verified() - watchFrom; got < int64(handoverStreams*probe.StreamChunk*int(handoverWatch/probe.StreamEvery)/2) {
			return fmt.Errorf("%d bytes checked on the streams since the move", got)
		}
		return nil
	}); err != nil && drain {
		errorf("%s: the streams did not go on after the move: %v", how, err)
	}
	idleFailed, idleErrs := fl.askIdle()
	streamsBroken, streamErrs := fl.streamErrors()

	exits := "-"
	if target == holder {
		// The old holder serves the flows until they close; the test closes them now.
		if drain && e.state(target) != "running" {
			errorf("%s: the old holder %s is %s with its connections still open, want it running (draining)", how, target, e.state(target))
		}
		fl.close()
		closed := time.Now()
		if err := poll(drainedExit, func() error {
			if st := e.state(target); st != "exited" {
				return fmt.Errorf("%s is %s", target, st)
			}
			return nil
		}); err != nil {
			errorf("%s: the old holder did not exit within %s of its last connection closing: %v", how, drainedExit, err)
		} else {
			exits = time.Since(closed).Round(100 * time.Millisecond).String()
		}
	}
	if err := <-stopped; err != nil {
		errorf("docker stop %s: %v", target, err)
	}
	if code := e.mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", e.container(target)); code != "0" {
		errorf("%s: vipd on %s exited %s, want 0", how, target, code)
	}

	if drain {
		if idleFailed > 0 || streamsBroken > 0 {
			errorf("%s (holder %s → %s): %d of %d idle connections and %d of %d streams broke across a planned move: %s",
				how, holder, next, idleFailed, handoverIdle, streamsBroken, handoverStreams, joinErrs(idleErrs, streamErrs))
		}
	} else if idleFailed < handoverIdle*9/10 || streamsBroken < handoverStreams*9/10 {
		errorf("%s without hand-over drains: %d of %d idle connections and %d of %d streams broke, want nearly all (else the test cannot tell the feature works)",
			how, idleFailed, handoverIdle, streamsBroken, handoverStreams)
	}
	name := "vipd leave on the holder"
	if how != "leave" {
		name = "SIGTERM " + how
	}
	if !drain {
		name += ", drains off"
	}
	row = fmt.Sprintf("%-40s %-7s %-7s %6d %6d %4d of %2d %10s %12s\n", name, holder, next, handoverIdle,
		idleFailed, handoverStreams-streamsBroken, handoverStreams, outage.Round(time.Millisecond), exits)

	e.mustDocker(t, "start", e.container(target))
	s.waitStable(t, "after restarting "+target, lbs, 60*time.Second)
	return row, problems
}

// handoverFlows are the connections one move carries.
type handoverFlows struct {
	idle    []*vipConn
	streams []*streamConn
	once    sync.Once
}

func openHandoverFlows(t *testing.T, addr string) (*handoverFlows, error) {
	t.Helper()
	fl := &handoverFlows{idle: make([]*vipConn, handoverIdle)}
	t.Cleanup(fl.close)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	next := atomic.Int64{}
	for range dialers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < handoverIdle; i = int(next.Add(1) - 1) {
				c, err := dialVIP(addr)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				fl.idle[i] = c
			}
		})
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		return fl, fmt.Errorf("open %d keep-alive connections through the VIP: %w", handoverIdle, *err)
	}
	for i := range handoverStreams {
		sc, err := openStream(addr, uint64(i+1))
		if err != nil {
			return fl, fmt.Errorf("open stream %d through the VIP: %w", i, err)
		}
		fl.streams = append(fl.streams, sc)
	}
	return fl, nil
}

// dialVIP opens a TLS connection through the VIP and asks once, so the upstream is known.
func dialVIP(addr string) (*vipConn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &vipConn{c: probe.NewTLS(raw)}
	c.br = bufio.NewReader(c.c)
	if c.upstream, err = c.get(); err != nil {
		c.c.Close()
		return nil, err
	}
	return c, nil
}

// askIdle sends one GET on every idle connection and returns how many failed, with a few of the errors.
func (fl *handoverFlows) askIdle() (failed int, errs []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range dialers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(fl.idle); i = int(next.Add(1) - 1) {
				c := fl.idle[i]
				if up, err := c.get(); err != nil || up != c.upstream {
					mu.Lock()
					failed++
					if len(errs) < 3 {
						errs = append(errs, fmt.Sprintf("idle %d (%s): %q %v", i, c.upstream, up, err))
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed, errs
}

func (fl *handoverFlows) verified() int64 {
	var n int64
	for _, sc := range fl.streams {
		n += sc.checked.Load()
	}
	return n
}

func (fl *handoverFlows) streamErrors() (broken int, errs []string) {
	for i, sc := range fl.streams {
		if err := sc.err(); err != nil {
			broken++
			if len(errs) < 3 {
				errs = append(errs, fmt.Sprintf("stream %d after %d bytes: %v", i, sc.checked.Load(), err))
			}
		}
	}
	return broken, errs
}

func (fl *handoverFlows) close() {
	fl.once.Do(func() {
		for _, sc := range fl.streams {
			sc.stop()
		}
		for _, c := range fl.idle {
			if c != nil {
				c.c.Close()
			}
		}
	})
}

// streamConn reads GET /stream?seed=N through the VIP and checks every byte against probe.StreamSource(N).
type streamConn struct {
	c       net.Conn
	checked atomic.Int64
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	failure error
}

func openStream(addr string, seed uint64) (*streamConn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := probe.NewTLS(raw)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /stream?seed=%d HTTP/1.1\r\nHost: kubernetes\r\n\r\n", seed); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("GET /stream: %s", resp.Status)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sc := &streamConn{c: c, cancel: cancel, done: make(chan struct{})}
	go sc.read(ctx, resp.Body, probe.NewStreamCheck(seed))
	return sc, nil
}

func (sc *streamConn) read(ctx context.Context, body io.Reader, check *probe.StreamCheck) {
	defer close(sc.done)
	got := make([]byte, probe.StreamChunk)
	for ctx.Err() == nil {
		_ = sc.c.SetReadDeadline(time.Now().Add(5 * time.Second)) // a stream stalled this long is broken
		n, err := body.Read(got)
		if n > 0 {
			if !check.Check(got[:n]) {
				off, _ := check.FirstBad()
				sc.fail(fmt.Errorf("byte %d onwards differs from the stream's source", off))
				return
			}
			sc.checked.Add(int64(n))
		}
		if err != nil {
			if ctx.Err() == nil {
				sc.fail(err)
			}
			return
		}
	}
}

func (sc *streamConn) fail(err error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.failure == nil {
		sc.failure = err
	}
}

func (sc *streamConn) err() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.failure
}

func (sc *streamConn) stop() {
	sc.cancel()
	sc.c.Close()
	<-sc.done
}

func joinErrs(lists ...[]string) string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	return strings.Join(all, "; ")
}

// raiseNoFile lifts the test process's open-file limit to its hard limit: it holds over a thousand
// connections at once, beside the probes.
func raiseNoFile(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil && !errors.Is(err, syscall.EPERM) {
			t.Fatalf("raise the open-file limit: %v", err)
		}
	}
}

// handoverCrash: vipd leave on the holder with connections open, then the draining old holder dies (its links
// cut, then docker kill).
// The new holder must stop forwarding to a node gossip no longer sees alive, so the clients of the drained
// flows get its reset (as after any crash) instead of a hang: the time from the kill until every sampled idle
// connection is reset is gossip's failure detection.
func handoverCrash(t *testing.T, s *suite, sum *strings.Builder) {
	e := s.env
	holder := s.waitStable(t, "before the drainer's crash", lbs, 60*time.Second)
	fl, err := openHandoverFlows(t, e.vip().String()+":6443")
	if err != nil {
		t.Fatalf("drainer crash: %v", err)
	}
	defer fl.close()
	if out, err := e.cli(holder, "leave"); err != nil {
		t.Fatalf("vipd leave on %s: %v\n%s", holder, err, out)
	}
	next := s.waitStable(t, "after the leave", others(holder), 30*time.Second)
	if failed, errs := fl.askIdle(); failed > 0 {
		t.Errorf("drainer crash: %d idle connections broke before the crash: %v", failed, errs)
	}
	// As a machine dies: the links go first, so the dying kernel cannot close the flows itself (a killed
	// process on a live kernel sends its clients FINs at once, which says nothing about the forwarding).
	killed := time.Now()
	for _, link := range []string{"eth0", "eth1"} {
		if err := e.netns(holder, "ip", "link", "set", "dev", link, "down"); err != nil {
			t.Fatalf("drainer crash: %s down in %s: %v", link, holder, err)
		}
	}
	e.mustDocker(t, "kill", e.container(holder))
	// One request on each sampled connection: its segment is forwarded to the dead drainer and lost, and TCP
	// retransmits it until the new holder no longer forwards and answers the unknown flow with a reset.
	sample := fl.idle[:20]
	var mu sync.Mutex
	var took time.Duration
	var notReset []string
	var wg sync.WaitGroup
	for i, c := range sample {
		wg.Go(func() {
			_, err := probe.GetOn(c.c, c.br, killed.Add(60*time.Second))
			at := time.Since(killed)
			mu.Lock()
			defer mu.Unlock()
			took = max(took, at)
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				notReset = append(notReset, fmt.Sprintf("connection %d after %s: %v", i, at.Round(time.Millisecond), err))
			}
		})
	}
	wg.Wait()
	if len(notReset) > 0 {
		t.Errorf("drainer crash: clients of the drained flows must be reset (never forwarded to a dead node), %d of %d were not: %v",
			len(notReset), len(sample), notReset)
	}
	fmt.Fprintf(sum, "%-40s %-7s %-7s %6d %6s %9s %10s %12s\n", "vipd leave, then the drainer killed", holder, next,
		handoverIdle, fmt.Sprintf("%d/%d", len(sample)-len(notReset), len(sample)), "-", "-", "reset "+took.Round(100*time.Millisecond).String())
	fl.close()
	e.mustDocker(t, "start", e.container(holder))
	s.waitStable(t, "after restarting "+holder, lbs, 60*time.Second)
}
