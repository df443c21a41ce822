package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// result is one target's row of figures; NaN-free: a zero with a note means "not measured".
type result struct {
	name    string
	skipped string
	notes   []string

	gbps          float64
	connPerSec    float64
	connFailed    int64
	cpuPerConn    time.Duration // 0 = n/a
	p50, p99      time.Duration
	latCPUPerConn time.Duration // proxy CPU per connection in the open-loop latency test; 0 = n/a
	latFailed     int
	idleHeld      int
	fdsPerConn    float64 // -1 = n/a
	rssPerConnK   float64 // -1 = n/a
}

func (r *result) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.notes = append(r.notes, msg)
	fmt.Printf("  %-8s %s\n", r.name, msg)
}

func selected(only, name string) bool {
	for _, s := range strings.Split(only, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

// measure runs the four tests against a fresh instance of k each.
func measure(ctx context.Context, k targetKind, be *backend, o options) result {
	r := result{name: k.name, fdsPerConn: -1, rssPerConnK: -1}
	withTarget := func(test string, f func(t *target)) {
		if ctx.Err() != nil || !selected(o.tests, test) {
			return
		}
		waitDrained(be, 5*time.Second)
		t, err := k.start(ctx, be.addrs())
		if err != nil {
			r.note("%s: %v", test, err)
			return
		}
		defer t.stop()
		f(t)
	}

	withTarget("bulk", func(t *target) {
		g, err := bulk(ctx, t.addr, be, o.streams, 500*time.Millisecond, o.dur)
		if err != nil {
			r.note("bulk: %v", err)
			return
		}
		r.gbps = g
		r.note("bulk %.2f Gbit/s", g)
	})

	withTarget("rate", func(t *target) {
		rate(ctx, t.addr, o.workers, 300*time.Millisecond) // warm up pools and the Go heap
		var cpu0 time.Duration
		if t.pid != 0 {
			cpu0, _ = cpuTime(t.pid)
		}
		start := time.Now()
		ok, failed := rate(ctx, t.addr, o.workers, o.dur)
		elapsed := time.Since(start)
		r.connPerSec = float64(ok) / elapsed.Seconds()
		r.connFailed = failed
		if t.pid != 0 && ok > 0 {
			cpu1, err := cpuTime(t.pid)
			if err != nil {
				r.note("rate: cpu: %v", err)
			} else {
				r.cpuPerConn = (cpu1 - cpu0) / time.Duration(ok)
			}
		}
		r.note("rate %.0f conn/s (%d failed), %s CPU/conn", r.connPerSec, failed, fmtUS(r.cpuPerConn))
	})

	withTarget("latency", func(t *target) {
		var cpu0 time.Duration
		if t.pid != 0 {
			cpu0, _ = cpuTime(t.pid)
		}
		l := latency(ctx, t.addr, o.perSec, o.dur)
		r.p50, r.p99, r.latFailed = l.p50, l.p99, l.fail
		if t.pid != 0 && l.ok > 0 {
			if cpu1, err := cpuTime(t.pid); err == nil {
				r.latCPUPerConn = (cpu1 - cpu0) / time.Duration(l.ok)
			}
		}
		r.note("latency p50 %s p99 %s (%d ok, %d failed), %s CPU/conn at %d conn/s", fmtMS(l.p50), fmtMS(l.p99), l.ok, l.fail, fmtUS(r.latCPUPerConn), o.perSec)
	})

	withTarget("idle", func(t *target) {
		// Warm up so the baseline includes what any proxy allocates once (pools, first goroutines).
		for range 50 {
			exchange(t.addr, time.Second)
		}
		time.Sleep(200 * time.Millisecond)
		var rss0 int64
		var fd0 int
		if t.pid != 0 {
			rss0, _ = rssKiB(t.pid)
			fd0, _ = fdCount(t.pid)
		}
		conns, err := holdIdle(ctx, t.addr, o.idle, 60*time.Second)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		r.idleHeld = len(conns)
		if err != nil {
			r.note("idle: held %d of %d: %v", len(conns), o.idle, err)
		}
		if t.pid == 0 || len(conns) == 0 {
			r.note("idle held %d (no proxy process to measure)", len(conns))
			return
		}
		time.Sleep(time.Second) // let the proxy settle after its last handshake
		rss1, err1 := rssKiB(t.pid)
		fd1, err2 := fdCount(t.pid)
		if err1 != nil || err2 != nil {
			r.note("idle: proc: %v %v", err1, err2)
			return
		}
		n := float64(len(conns))
		r.rssPerConnK = float64(rss1-rss0) / n
		r.fdsPerConn = float64(fd1-fd0) / n
		r.note("idle held %d: %.2f fds/conn, %.2f KiB RSS/conn", len(conns), r.fdsPerConn, r.rssPerConnK)
	})
	return r
}

// waitDrained gives the backend time to see the previous test's connections close.
func waitDrained(be *backend, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for be.open() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}
