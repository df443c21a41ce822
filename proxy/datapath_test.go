package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// stream writes size bytes of a deterministic pseudo-random stream (seeded by seed) to w in 1 MiB chunks,
// each stamped with its index so reordered or repeated chunks change the checksum, and returns its sha256.
func stream(w io.Writer, seed uint64, size int) ([]byte, error) {
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < len(block); i += 8 {
		binary.LittleEndian.PutUint64(block[i:], r.Uint64())
	}
	h := sha256.New()
	for i := 0; i*len(block) < size; i++ {
		binary.LittleEndian.PutUint64(block, uint64(i)^seed)
		h.Write(block)
		if _, err := w.Write(block); err != nil {
			return nil, err
		}
	}
	return h.Sum(nil), nil
}

func sumAll(r io.Reader) ([]byte, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(struct{ hash.Hash }{h}, struct{ io.Reader }{r}, make([]byte, 256<<10))
	return h.Sum(nil), n, err
}

func TestLargeTransferBothWaysIntegrity(t *testing.T) {
	const size = 64 << 20
	type result struct {
		sum []byte
		n   int64
		err error
	}
	atBackend := make(chan result, 1)
	sentByBackend := make(chan []byte, 1)
	be := startBackend(t, func(c net.Conn) {
		var wg sync.WaitGroup
		wg.Go(func() {
			sum, n, err := sumAll(c)
			atBackend <- result{sum, n, err}
		})
		sum, err := stream(c, 2, size)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		if err != nil {
			t.Errorf("backend send: %v", err)
		}
		sentByBackend <- sum
		wg.Wait()
	})
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	c := dial(t, tp.addr)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))

	sentByClient := make(chan []byte, 1)
	go func() {
		sum, err := stream(c, 1, size)
		if err == nil {
			err = c.CloseWrite()
		}
		if err != nil {
			t.Errorf("client send: %v", err)
		}
		sentByClient <- sum
	}()
	gotAtClient, n, err := sumAll(c)
	if err != nil || n != size {
		t.Fatalf("client received %d bytes, err %v; want %d", n, err, size)
	}
	if want := <-sentByBackend; !bytes.Equal(gotAtClient, want) {
		t.Fatal("downstream checksum mismatch")
	}
	r := <-atBackend
	if r.err != nil || r.n != size {
		t.Fatalf("backend received %d bytes, err %v; want %d", r.n, r.err, size)
	}
	if want := <-sentByClient; !bytes.Equal(r.sum, want) {
		t.Fatal("upstream checksum mismatch")
	}
	waitFor(t, 5*time.Second, "connection release", func() bool { return tp.p.Counters().Active == 0 })
	st := tp.p.Stats()
	if len(st) != 1 || st[0].BytesUpstream != size || st[0].BytesDownstream != size {
		t.Fatalf("stats %+v, want %d bytes each way", st, size)
	}
}

// fds counts this process's open file descriptors and, among them, pipes.
func fds(t testing.TB) (total, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return len(ents), pipes
}

// TestIdleConnectionsHoldNoPipes proves the design goal: after moving data, a proxied connection waiting for
// more holds its two sockets and nothing else. Pipes exist only in the proxy's bounded free list.
func TestIdleConnectionsHoldNoPipes(t *testing.T) {
	const n = 200
	be := startBackend(t, echo)
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	pool := tp.p.pipes

	// Warm up (runtime fds, first pipes), then take the baseline with no connection open.
	if _, err := roundTrip(dial(t, tp.addr), "warm"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "warm-up conn to stay open idle", func() bool { return tp.p.Counters().Active == 1 })
	total0, pipes0 := fds(t)
	idle0 := pool.idle()
	other := pipes0 - 2*idle0 // pipes not the proxy's, e.g. the test binary's stdout when piped

	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		conns[i] = dial(t, tp.addr)
		wg.Go(func() {
			msg := strings.Repeat("x", 64<<10) // beyond copyBufSize: copies, then several splices each way
			if r, err := roundTrip(conns[i], msg); err != nil || r != msg {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("round trip: %v", err)
	}

	// Every direction parks after handing its pipe back; give the pumps a moment to get there.
	var total, pipes, idle int
	waitFor(t, 5*time.Second, "idle connections to hold no pipes", func() bool {
		total, pipes = fds(t)
		idle = pool.idle()
		return pipes-2*idle == other
	})
	t.Logf("%d idle proxied connections: %d fds (baseline %d), %d pipe fds: %d other, %d pipes in the free list",
		n, total, total0, pipes, other, idle)
	// Per connection: client end + backend end (test side) + the proxy's two sockets = 4; pipes only from
	// the free list, which is bounded.
	if got, want := total-total0, 4*n+2*(idle-idle0); got != want {
		t.Fatalf("fds grew by %d for %d idle connections, want %d (4 sockets each, no pipes)", got, n, want)
	}
	if idle > keepPipes {
		t.Fatalf("free list holds %d pipes, bound is %d", idle, keepPipes)
	}
	for _, c := range conns {
		if r, err := roundTrip(c, "still alive"); err != nil || r != "still alive" {
			t.Fatalf("idle connection broken: %q, %v", r, err)
		}
	}
}

// TestBackendByNameAndSmallThenBulk covers both dial paths (an IP literal connects raw, a name goes through
// net.Dialer) and both copy modes on one connection: small messages through the copy buffer, then a
// transfer that fills it and switches the direction to splice, then small messages again.
func TestBackendByNameAndSmallThenBulk(t *testing.T) {
	be := startBackend(t, echo)
	_, port, _ := net.SplitHostPort(be.addr)
	for _, addr := range []string{be.addr, net.JoinHostPort("localhost", port)} {
		t.Run(addr, func(t *testing.T) {
			tp := startProxy(t, Config{}, newFakeBackends(addr))
			c := dial(t, tp.addr)
			for _, msg := range []string{"small", strings.Repeat("b", 3*copyBufSize+7), "small again"} {
				if r, err := roundTrip(c, msg); err != nil || r != msg {
					t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(r), err)
				}
			}
		})
	}
}

// TestIdleConnectionsHoldNoGoroutine checks the memory design: an idle proxied connection is two sockets in
// a reactor's epoll set and a pooled struct, no goroutine of its own; and data the backend sends on its own
// (server speaks first, after a pause) still reaches the client.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 100
	release := make(chan struct{})
	be := startBackend(t, func(c net.Conn) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return
		}
		if _, err := io.WriteString(c, "late hello\n"); err != nil {
			return
		}
		echo(c)
	})
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	waitFor(t, 2*time.Second, "proxy to settle", func() bool { return tp.p.Counters().Active == 0 })
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dial(t, tp.addr)
	}
	// The backend handlers add one goroutine per connection; the proxy should add none.
	var g int
	waitFor(t, 5*time.Second, "no proxy goroutine per idle connection", func() bool {
		g = runtime.NumGoroutine() - g0
		return tp.p.Counters().Active == n && g <= n+5
	})
	t.Logf("%d idle connections: %d more goroutines (backend handlers included)", n, g)
	close(release)
	for i, c := range conns {
		if line, err := readLine(c); err != nil || line != "late hello" {
			t.Fatalf("conn %d: server-speaks-first line %q, %v", i, line, err)
		}
		if r, err := roundTrip(c, "ping"); err != nil || r != "ping" {
			t.Fatalf("conn %d: echo after wake-up %q, %v", i, r, err)
		}
	}
}
