package handover

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	itprobe "github.com/vipd/vipd/integration/probe"
	"github.com/vipd/vipd/internal/nstest"
)

// held is one long-lived connection through the VIP, idle (it answers a ping when asked) or streaming (a
// writer sends a ChaCha8 stream seeded per connection, 100 KiB/s, and a reader checks every byte that comes
// back). Both directions are counted and hashed at the client and at the backend, so a lost, duplicated or
// altered byte shows as a count or a checksum that differs at the end.
type held struct {
	c      *net.TCPConn
	node   string // the node whose proxy carried it (the backend's hello)
	serial int64  // the backend's record of it
	stream bool

	// The sending side: the writer goroutine of a stream, or pingers (one at a time) of an idle connection.
	// Read by others only after writerDone (a stream) or after the pings (idle).
	written  atomic.Int64
	sentSum  hash.Hash
	writerOK chan struct{} // a stream's writer has returned

	// The receiving side, owned by the watcher goroutine; readSum, closedAt and closeErr are read after done.
	read     atomic.Int64
	check    *itprobe.StreamCheck // a stream: the bytes that came back, against the stream sent
	readSum  hash.Hash
	done     chan struct{}
	closedAt time.Time
	closeErr error

	halfClosed atomic.Bool // the test sent FIN: an EOF after that is the clean end
}

// openHeld connects to addr from ns, reads the backend's hello and, for an idle connection, does one ping;
// then it starts the connection's goroutines, which end with it (wg counts them).
func openHeld(ns *nstest.NS, addr string, stream bool, seed uint64, stop <-chan struct{}, wg *sync.WaitGroup) (*held, error) {
	c, err := ns.Dial("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	h := &held{c: c.(*net.TCPConn), stream: stream, sentSum: sha256.New(), readSum: sha256.New(), check: itprobe.NewStreamCheck(seed),
		writerOK: make(chan struct{}), done: make(chan struct{})}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if h.node, h.serial, err = readHello(c); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	wg.Go(h.watch)
	if stream {
		wg.Go(func() { h.write(seed, stop) })
	} else {
		close(h.writerOK)
		if err := h.ping(5 * time.Second); err != nil {
			c.Close()
			return nil, fmt.Errorf("first ping: %w", err)
		}
	}
	return h, nil
}

// readHello reads "n2 000042\n".
func readHello(c net.Conn) (string, int64, error) {
	hello := make([]byte, helloLen)
	if _, err := io.ReadFull(c, hello); err != nil {
		return "", 0, fmt.Errorf("hello: %w", err)
	}
	serial, err := strconv.ParseInt(string(hello[3:9]), 10, 64)
	if err != nil || hello[2] != ' ' || hello[9] != '\n' {
		return "", 0, fmt.Errorf("hello %q", hello)
	}
	return string(hello[:2]), serial, nil
}

// watch reads until the connection ends; a stream's bytes are compared with the stream sent.
func (h *held) watch() {
	buf := make([]byte, 32<<10)
	for {
		n, err := h.c.Read(buf)
		if n > 0 {
			h.readSum.Write(buf[:n])
			if h.stream {
				h.check.Check(buf[:n])
			}
			h.read.Add(int64(n))
		}
		if err != nil {
			h.closedAt, h.closeErr = time.Now(), err
			close(h.done)
			return
		}
	}
}

// write sends the stream (probe.WriteStream) until stop or an error, counting and hashing what it sent.
func (h *held) write(seed uint64, stop <-chan struct{}) {
	defer close(h.writerOK)
	itprobe.WriteStream(h.c, seed, 10*time.Second, stop, h.done, func(p []byte) {
		h.sentSum.Write(p)
		h.written.Add(int64(len(p)))
	})
}

// closed reports whether the connection has ended.
func (h *held) closed() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// broken says how the connection ended before the test closed it ("" if it has not): a reset, or an end the
// client did not ask for.
func (h *held) broken() string {
	if !h.closed() || h.halfClosed.Load() {
		return ""
	}
	if errors.Is(h.closeErr, syscall.ECONNRESET) {
		return "reset"
	}
	return fmt.Sprintf("closed: %v", h.closeErr)
}

// ping sends "ping\n" on an idle connection and waits for the echo.
func (h *held) ping(timeout time.Duration) error {
	const msg = "ping\n"
	want := h.written.Load() + int64(len(msg))
	_ = h.c.SetWriteDeadline(time.Now().Add(timeout))
	n, err := io.WriteString(h.c, msg)
	h.sentSum.Write([]byte(msg[:n]))
	h.written.Add(int64(n))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for h.read.Load() < want {
		if h.closed() {
			return fmt.Errorf("closed: %w", h.closeErr)
		}
		if time.Now().After(deadline) {
			return errors.New("no echo")
		}
		time.Sleep(2 * time.Millisecond) // polling a counter another goroutine advances, bounded by deadline
	}
	return nil
}

// finish ends the connection as a client that is done would, and checks it end to end: a stream's writer
// must have stopped (the generation's stop channel), every byte sent must have come back, then the client
// half-closes, the backend answers with its own FIN, and the counts and checksums of both ends must agree.
func (h *held) finish(b *backend, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if why := h.broken(); why != "" {
		return errors.New(why)
	}
	select {
	case <-h.writerOK:
	case <-time.After(time.Until(deadline)):
		return errors.New("the writer did not stop")
	}
	for h.read.Load() < h.written.Load() && !h.closed() && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if why := h.broken(); why != "" {
		return errors.New(why)
	}
	if r, w := h.read.Load(), h.written.Load(); r != w {
		return fmt.Errorf("%d bytes written, %d came back", w, r)
	}
	h.halfClosed.Store(true)
	if err := h.c.CloseWrite(); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	select {
	case <-h.done:
	case <-time.After(time.Until(deadline)):
		return errors.New("no FIN from the backend after the client's")
	}
	h.c.Close()
	if !errors.Is(h.closeErr, io.EOF) {
		return fmt.Errorf("ended with %v, not the backend's FIN", h.closeErr)
	}
	if off, bad := h.check.FirstBad(); bad {
		return fmt.Errorf("byte %d came back wrong", off)
	}
	end, ok := b.end(h.serial)
	switch {
	case !ok:
		return fmt.Errorf("the backend has no end of connection %d", h.serial)
	case end.err != nil:
		return fmt.Errorf("the backend's end: %w", end.err)
	case end.n != h.written.Load():
		return fmt.Errorf("%d bytes sent, the backend received %d", h.written.Load(), end.n)
	case !bytes.Equal(end.sum[:], h.sentSum.Sum(nil)) || !bytes.Equal(end.sum[:], h.readSum.Sum(nil)):
		return errors.New("checksums differ between what was sent, what the backend received and what came back")
	}
	return nil
}

// probeResult is one short connection through the VIP: connect, hello, one echo, close.
type probeResult struct {
	start time.Time
	took  time.Duration
	node  string
	err   error
}

// probe opens a connection through addr every interval until ctx ends and keeps every result. A probe due
// while maxInFlight are still open is counted as skipped, not failed: that is the generator falling behind.
type probe struct {
	mu      sync.Mutex
	results []probeResult
	skipped int
}

func (p *probe) run(ctx context.Context, ns *nstest.NS, addr string, interval time.Duration, maxInFlight int) {
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			p.mu.Lock()
			p.skipped++
			p.mu.Unlock()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r := probeOnce(ns, addr)
			p.mu.Lock()
			p.results = append(p.results, r)
			p.mu.Unlock()
		})
	}
}

func probeOnce(ns *nstest.NS, addr string) (r probeResult) {
	r.start = time.Now()
	defer func() { r.took = time.Since(r.start) }()
	c, err := ns.Dial("tcp", addr, 3*time.Second)
	if err != nil {
		r.err = err
		return r
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if r.node, _, r.err = readHello(c); r.err != nil {
		return r
	}
	const msg = "probe\n"
	if _, err := io.WriteString(c, msg); err != nil {
		r.err = err
		return r
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		r.err = err
	} else if string(got) != msg {
		r.err = fmt.Errorf("echo %q", got)
	}
	return r
}

// since returns the results of the probes started at or after from.
func (p *probe) since(from time.Time) []probeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probeResult
	for _, r := range p.results {
		if !r.start.Before(from) {
			out = append(out, r)
		}
	}
	return out
}
