package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// sample is what one run of one test against one target measured, by metric name (see rows in table.go).
// A metric it could not measure is absent.
type sample map[string]float64

// test is one measurement. cpus is how many CPUs the proxy gets for it (the load generator keeps its own
// one; with 2 the proxy shares it). Every run gets a fresh target process.
type test struct {
	name string
	cpus int
	run  func(ctx context.Context, t *target, be *backend, o options, note func(string, ...any)) sample
}

func tests() []test {
	return []test{
		{"bulk", 1, testBulk},
		{"rate", 1, testRate},
		{"latency", 1, testLatency},
		{"idle", 1, testIdle},
		{"storm", 1, testStorm},
		{"rate2", 2, testRate}, // the same short connections with the proxy on two CPUs
	}
}

func selected(only, name string) bool {
	for _, s := range strings.Split(only, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

// cpuMeter reads a target's CPU time (user and system, all threads) around a measurement; it reads nothing
// for a target without a process (direct).
type cpuMeter struct {
	pid    int
	u0, s0 time.Duration
	ok     bool
}

func startCPU(t *target) cpuMeter {
	m := cpuMeter{pid: t.pid}
	if t.pid != 0 {
		var err error
		m.u0, m.s0, err = cpuTimes(t.pid)
		m.ok = err == nil
	}
	return m
}

// since returns the CPU time used since start, false when unknown.
func (m cpuMeter) since() (time.Duration, bool) {
	u, s, ok := m.split()
	return u + s, ok
}

// split returns the user and the system CPU time used since start, false when unknown.
func (m cpuMeter) split() (user, system time.Duration, ok bool) {
	if !m.ok {
		return 0, 0, false
	}
	u1, s1, err := cpuTimes(m.pid)
	if err != nil {
		return 0, 0, false
	}
	return u1 - m.u0, s1 - m.s0, true
}

func testBulk(ctx context.Context, t *target, be *backend, o options, note func(string, ...any)) sample {
	var cpu cpuMeter
	g, bytes, err := bulk(ctx, t.addr, be, o.streams, 500*time.Millisecond, o.dur, func() { cpu = startCPU(t) })
	if err != nil {
		note("bulk: %v", err)
		return nil
	}
	s := sample{"gbps": g}
	if used, ok := cpu.since(); ok && bytes > 0 {
		s["cpuPerGB"] = used.Seconds() / (float64(bytes) / 1e9)
	}
	note("bulk %.2f Gbit/s, %s CPU/GB", g, fmtSec(s["cpuPerGB"]))
	return s
}

func testRate(ctx context.Context, t *target, _ *backend, o options, note func(string, ...any)) sample {
	rate(ctx, t.addr, o.workers, 300*time.Millisecond) // warm up pools and the Go heap
	cpu := startCPU(t)
	segs0, segsErr := tcpOutSegs()
	start := time.Now()
	ok, failed := rate(ctx, t.addr, o.workers, o.dur)
	elapsed := time.Since(start)
	s := sample{"connPerSec": float64(ok) / elapsed.Seconds(), "connFailed": float64(failed)}
	if user, system, known := cpu.split(); known && ok > 0 {
		s["cpuPerConn"] = float64(user+system) / float64(ok) / 1e3 // µs
		s["userPerConn"] = float64(user) / float64(ok) / 1e3
		s["sysPerConn"] = float64(system) / float64(ok) / 1e3
	}
	// The namespace is the bench's own (-netns): its counters hold only this test's segments.
	if segs1, err := tcpOutSegs(); os.Getenv(envInNetns) != "" && segsErr == nil && err == nil && ok > 0 {
		s["segsPerConn"] = float64(segs1-segs0) / float64(ok)
	}
	note("rate %.0f conn/s (%d failed), %s CPU/conn", s["connPerSec"], failed, fmtUSf(s["cpuPerConn"]))
	return s
}

func testLatency(ctx context.Context, t *target, _ *backend, o options, note func(string, ...any)) sample {
	cpu := startCPU(t)
	l := latency(ctx, t.addr, o.perSec, o.dur)
	s := sample{"latFailed": float64(l.fail)}
	if l.ok > 0 {
		s["p50"], s["p99"] = float64(l.p50)/1e6, float64(l.p99)/1e6 // ms
		if used, known := cpu.since(); known {
			s["latCPUPerConn"] = float64(used) / float64(l.ok) / 1e3
		}
	}
	note("latency p50 %s p99 %s (%d ok, %d failed), %s CPU/conn at %d conn/s", fmtMS(l.p50), fmtMS(l.p99), l.ok, l.fail,
		fmtUSf(s["latCPUPerConn"]), o.perSec)
	return s
}

func testIdle(ctx context.Context, t *target, _ *backend, o options, note func(string, ...any)) sample {
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
	s := sample{"idleHeld": float64(len(conns))}
	if err != nil {
		note("idle: held %d of %d: %v", len(conns), o.idle, err)
	}
	if t.pid == 0 || len(conns) == 0 {
		note("idle held %d (no proxy process to measure)", len(conns))
		return s
	}
	time.Sleep(time.Second) // let the proxy settle after its last handshake
	rss1, err1 := rssKiB(t.pid)
	fd1, err2 := fdCount(t.pid)
	if err1 != nil || err2 != nil {
		note("idle: proc: %v %v", err1, err2)
		return s
	}
	n := float64(len(conns))
	s["rssPerConnK"] = float64(rss1-rss0) / n
	s["fdsPerConn"] = float64(fd1-fd0) / n
	note("idle held %d: %.2f fds/conn, %.2f KiB RSS/conn", len(conns), s["fdsPerConn"], s["rssPerConnK"])
	return s
}

func testStorm(ctx context.Context, t *target, _ *backend, o options, note func(string, ...any)) sample {
	k0, kerr := readKernelCounters()
	cpu := startCPU(t)
	r, err := storm(ctx, t.addr, o.storm, o.stormWindow, 30*time.Second)
	used, cpuKnown := cpu.since() // the clients' closes have only begun: this is the storm's cost
	if err != nil {
		note("storm: %v", err)
		return nil
	}
	s := sample{
		"stormAll":      float64(r.all) / 1e6,
		"stormP99":      float64(r.p99) / 1e6,
		"stormRefused":  float64(r.refused + r.failed),
		"stormSlowSYN":  float64(r.slowConnects),
		"stormWindowMS": float64(r.window) / 1e6,
	}
	if kerr == nil {
		if k1, err := readKernelCounters(); err == nil {
			d := k1.minus(k0)
			s["stormOverflows"] = float64(d.listenOverflows + d.listenDrops)
			s["stormSynRetrans"] = float64(d.synRetrans)
		}
	}
	if cpuKnown && r.clients > 0 {
		s["stormCPUPerConn"] = float64(used) / float64(r.clients) / 1e3 // µs
	}
	if t.pid != 0 {
		if hwm, err := peakRSSKiB(t.pid); err == nil {
			s["stormPeakRSS"] = float64(hwm) / 1024 // MiB
		}
	}
	note("storm %d clients connecting over %s: all answered after %s (p99 %s); %d refused, %d failed, %d connects took > 1 s; "+
		"kernel: %.0f listen overflows+drops, %.0f SYN retransmits; peak RSS %.1f MiB",
		r.clients, fmtMS(r.window), fmtMS(r.all), fmtMS(r.p99), r.refused, r.failed, r.slowConnects,
		s["stormOverflows"], s["stormSynRetrans"], s["stormPeakRSS"])
	return s
}

// waitDrained gives the backend time to see the previous test's connections close.
func waitDrained(be *backend, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for be.open() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

func fmtSec(v float64) string {
	if v <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f s", v)
}

func fmtUSf(v float64) string {
	if v <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f µs", v)
}
