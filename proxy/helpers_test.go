package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeBackends is a Backends whose healthy set the test controls; it records passive dial failures.
type fakeBackends struct {
	mu       sync.Mutex
	healthy  []string
	failures map[string]int
}

func newFakeBackends(addrs ...string) *fakeBackends {
	return &fakeBackends{healthy: addrs, failures: map[string]int{}}
}

func (f *fakeBackends) Healthy() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthy
}

func (f *fakeBackends) set(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthy = addrs
}

func (f *fakeBackends) ReportDialFailure(addr string, _ error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[addr]++
}

func (f *fakeBackends) failuresOf(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures[addr]
}

var _ Backends = (*fakeBackends)(nil)

// testBackend is a real TCP server on 127.0.0.1 running handler per connection.
type testBackend struct {
	ln       net.Listener
	addr     string
	accepted atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	killed bool
	wg     sync.WaitGroup
}

func startBackend(t testing.TB, handler func(net.Conn)) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			if b.killed {
				b.mu.Unlock()
				_ = c.Close()
				continue
			}
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Go(func() {
				defer func() {
					b.mu.Lock()
					delete(b.conns, c)
					b.mu.Unlock()
					_ = c.Close()
				}()
				handler(c)
			})
		}
	})
	t.Cleanup(b.kill)
	return b
}

// kill stops the backend like a crashed process: the port refuses connects and open connections close.
func (b *testBackend) kill() {
	b.mu.Lock()
	b.killed = true
	_ = b.ln.Close()
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// echo copies everything back with a plain buffer (io.Copy would splice and hold pipes in this process).
func echo(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// named writes the backend's name first, then echoes.
func named(name string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := io.WriteString(c, name+"\n"); err != nil {
			return
		}
		echo(c)
	}
}

type testProxy struct {
	p    *Proxy
	addr string
	stop context.CancelFunc
	done chan error
}

// shutdown cancels Serve and returns its result.
func (tp *testProxy) shutdown(t testing.TB) error {
	t.Helper()
	tp.stop()
	select {
	case err := <-tp.done:
		tp.done <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancel")
		return nil
	}
}

func startProxy(t testing.TB, cfg Config, b Backends) *testProxy {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	return serveProxy(t, p)
}

// serveProxy runs p on a Listen listener on loopback until the test ends.
func serveProxy(t testing.TB, p *Proxy) *testProxy {
	t.Helper()
	ln, err := p.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp := &testProxy{p: p, addr: ln.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { tp.done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := tp.shutdown(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return tp
}

// testLogger sends logs to t.Log so they show only on failure.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// countingHandler counts records by message; it also forwards to next.
type countingHandler struct {
	next slog.Handler
	mu   *sync.Mutex
	msgs map[string]int
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs[r.Message]++
	h.mu.Unlock()
	return h.next.Handle(ctx, r)
}
func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countingHandler{next: h.next.WithAttrs(a), mu: h.mu, msgs: h.msgs}
}
func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{next: h.next.WithGroup(g), mu: h.mu, msgs: h.msgs}
}

func (h countingHandler) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for m, c := range h.msgs {
		if strings.HasPrefix(m, prefix) {
			n += c
		}
	}
	return n
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads len(msg) bytes back.
func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// readLine reads up to and excluding '\n' byte by byte (no buffering past it).
func readLine(c net.Conn) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	var sb strings.Builder
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return sb.String(), err
		}
		if b[0] == '\n' {
			return sb.String(), nil
		}
		sb.WriteByte(b[0])
	}
}

// expectClosed asserts that the server side ends c (reset or EOF) within d, and returns how long it took.
func expectClosed(t testing.TB, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	n, err := c.Read(make([]byte, 1))
	took := time.Since(start)
	if n > 0 || err == nil {
		t.Fatalf("read %d bytes, err %v; want connection closed", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed within %v", d)
	}
	if !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("read error %v; want EOF or connection reset", err)
	}
	return took
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// expectRefused connects to addr and asserts the proxy turns the connection away within d: either the
// connect itself already sees the reset (the proxy was that quick) or the first read does.
func expectRefused(t testing.TB, addr string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		if !isReset(err) {
			t.Fatalf("dial: %v; want success or connection reset", err)
		}
		return time.Since(start)
	}
	t.Cleanup(func() { _ = c.Close() })
	expectClosed(t, c, d)
	return time.Since(start)
}
