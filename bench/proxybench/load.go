package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var errShortReply = errors.New("short reply")

// exchange is one short connection: connect, 32-byte request, 64-byte reply, the server's close, close.
func exchange(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var req [requestSize]byte
	req[0] = modeReply
	if _, err := c.Write(req[:]); err != nil {
		return err
	}
	var buf [2 * replySize]byte
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if n != replySize {
		return fmt.Errorf("%w: %d bytes", errShortReply, n)
	}
	return nil
}

// bulk runs streams parallel uploads for warm+dur and returns the rate and the bytes the backend received
// during dur; atStart runs when dur starts.
func bulk(ctx context.Context, addr string, be *backend, streams int, warm, dur time.Duration, atStart func()) (gbps float64, bytes int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, warm+dur+5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	conns := make([]net.Conn, 0, streams)
	for range streams {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return 0, 0, fmt.Errorf("dial bulk stream: %w", err)
		}
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 256<<10)
			buf[0] = modeBulk
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(buf); err != nil {
					errs <- err
					return
				}
				buf[0] = 'x'
			}
		}()
	}
	sleepCtx(ctx, warm)
	atStart()
	before, t0 := be.received.Load(), time.Now()
	sleepCtx(ctx, dur)
	after, t1 := be.received.Load(), time.Now()
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, 0, fmt.Errorf("bulk stream: %w", err)
	default:
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return float64(after-before) * 8 / t1.Sub(t0).Seconds() / 1e9, after - before, nil
}

// rate runs workers closed-loop short connections for dur.
func rate(ctx context.Context, addr string, workers int, dur time.Duration) (ok, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var okN, failN atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := exchange(addr, 2*time.Second); err != nil {
					failN.Add(1)
					continue
				}
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	return okN.Load(), failN.Load()
}

// latencyResult is the open-loop measurement at a fixed connection rate.
type latencyResult struct {
	p50, p99 time.Duration
	ok, fail int
}

// latency opens perSec short connections per second for dur, each on schedule whether or not earlier ones have
// finished (open loop), and measures from the scheduled start, so a stall shows up instead of being hidden.
func latency(ctx context.Context, addr string, perSec int, dur time.Duration) latencyResult {
	n := int(dur.Seconds() * float64(perSec))
	interval := time.Second / time.Duration(perSec)
	lat := make([]time.Duration, n)
	failed := make([]bool, n)
	const maxInFlight = 2000
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	t0 := time.Now().Add(10 * time.Millisecond)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := t0.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			failed[i] = true // too many stuck: count as failure rather than block the schedule
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := exchange(addr, 2*time.Second); err != nil {
				failed[i] = true
				return
			}
			lat[i] = time.Since(at)
		}()
	}
	wg.Wait()
	var r latencyResult
	good := make([]time.Duration, 0, n)
	for i := range n {
		if failed[i] || lat[i] == 0 {
			r.fail++
			continue
		}
		good = append(good, lat[i])
	}
	r.ok = len(good)
	if len(good) > 0 {
		slices.Sort(good)
		r.p50 = good[len(good)/2]
		r.p99 = good[min(len(good)-1, len(good)*99/100)]
	}
	return r
}

// holdIdle opens n connections through addr, each proven end to end by a one-byte echo, and returns them open.
// It stops early at the first run of failures (e.g. the target is out of descriptors).
func holdIdle(ctx context.Context, addr string, n int, timeout time.Duration) ([]net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	const workers = 32
	var mu sync.Mutex
	conns := make([]net.Conn, 0, n)
	var firstErr error
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				c, err := openEcho(addr)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && len(conns) < n {
		firstErr = fmt.Errorf("opened %d of %d in %s", len(conns), n, timeout)
	}
	return conns, firstErr
}

func openEcho(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		c.Close()
		return nil, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("echo: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
