package reload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	itprobe "github.com/vipd/vipd/integration/probe"
)

// held is one long-lived connection through the VIP: idle (it answers one echo when asked) or streaming
// (a writer sends a ChaCha8 stream seeded per connection and a reader checks every byte that comes back).
// A watcher notes the instant the connection ends and why.
type held struct {
	c       net.Conn
	backend string // from the backend's hello
	stream  bool

	read     atomic.Int64         // bytes read after the hello
	written  atomic.Int64         // streaming: bytes written
	check    *itprobe.StreamCheck // streaming: the bytes that came back, against the stream sent
	done     chan struct{}
	closedAt time.Time // set before done closes
	closeErr error
}

// openHeld connects through addr from the client namespace, reads the backend's hello and, for an idle
// connection, does one echo; then it starts the connection's goroutines (ended by closing c).
func openHeld(ns *netNS, addr string, stream bool, seed uint64, stop <-chan struct{}, wg *sync.WaitGroup) (*held, error) {
	c, err := ns.dial(addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	h := &held{c: c, stream: stream, check: itprobe.NewStreamCheck(seed), done: make(chan struct{})}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	hello := make([]byte, 3)
	if _, err := io.ReadFull(c, hello); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	h.backend = string(hello[:2])
	if !stream {
		if err := echo(c, "ping\n"); err != nil {
			c.Close()
			return nil, err
		}
	}
	_ = c.SetDeadline(time.Time{})
	wg.Add(1)
	go h.watch(wg)
	if stream {
		wg.Add(1)
		go h.write(seed, stop, wg)
	}
	return h, nil
}

func echo(c net.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q came back as %q", msg, got)
	}
	return nil
}

// watch reads until the connection ends; a streaming connection's bytes are compared with the stream sent.
func (h *held) watch(wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := h.c.Read(buf)
		if n > 0 {
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

// write sends the stream (probe.WriteStream, 100 KiB/s) until stop or an error, counting what it sent.
func (h *held) write(seed uint64, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	itprobe.WriteStream(h.c, seed, 5*time.Second, stop, h.done, func(p []byte) { h.written.Add(int64(len(p))) })
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

// pingIdle asks an idle connection for one more echo: the watcher must see the bytes come back.
func (h *held) pingIdle(timeout time.Duration) error {
	before := h.read.Load()
	if _, err := io.WriteString(h.c, "ping\n"); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for h.read.Load() < before+5 {
		if h.closed() {
			return fmt.Errorf("closed: %v", h.closeErr)
		}
		if time.Now().After(deadline) {
			return errors.New("no echo")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// shortResult is one short connection: connect, hello, one echo, close.
type shortResult struct {
	start, end time.Time
	backend    string
	err        error
}

// shortLoad opens rate connections a second through addr until ctx ends and keeps every result. A connection
// due while maxInFlight are still open is counted as skipped, not as a failure: it is the load generator
// falling behind, which the skipped count shows.
type shortLoad struct {
	mu      sync.Mutex
	results []shortResult
	skipped int
}

func (l *shortLoad) run(ctx context.Context, ns *netNS, addr string, rate, maxInFlight int) {
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Each tick starts the connections due by then, so a late tick does not lower the rate.
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start, due := time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for ; due < int(now.Sub(start).Seconds()*float64(rate)); due++ {
				select {
				case sem <- struct{}{}:
				default:
					l.mu.Lock()
					l.skipped++
					l.mu.Unlock()
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					r := shortOnce(ns, addr)
					l.mu.Lock()
					l.results = append(l.results, r)
					l.mu.Unlock()
				}()
			}
		}
	}
}

func shortOnce(ns *netNS, addr string) (r shortResult) {
	r.start = time.Now()
	defer func() { r.end = time.Now() }()
	c, err := ns.dial(addr, 2*time.Second)
	if err != nil {
		r.err = err
		return r
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	hello := make([]byte, 3)
	if _, err := io.ReadFull(c, hello); err != nil {
		r.err = fmt.Errorf("hello: %w", err)
		return r
	}
	r.backend = string(hello[:2])
	r.err = echo(c, "ping\n")
	return r
}

func (l *shortLoad) snapshot() ([]shortResult, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]shortResult(nil), l.results...), l.skipped
}
