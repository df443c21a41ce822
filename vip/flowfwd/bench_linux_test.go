//go:build linux

package flowfwd_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestForwardingCost measures what forwarding a drained flow costs, in the hand-over test's namespaces:
//
//   - the round trip of a 32-byte ping-pong on one connection, direct to A, forwarded through B to A, local
//     to B with the rules installed, and local to B with no rules;
//   - the CPU spent while one connection streams at 1 Gbit/s (paced in user space) to a sink, direct to A, forwarded
//     through B, and local to B. CPU is this test process's user+system time (every namespace's Go code
//     and, with tick-based accounting and no IRQ-time accounting, the softirq work that runs in its
//     threads) plus the ksoftirqd threads' time, both sampled over the run; the difference between the
//     forwarded and the direct stream is B's forwarding work. The machine's total softirq time in /proc/stat
//     is shown too, but other processes add to it.
//
// "Direct to A" uses A's own address, the same path (client, bridge, A) the VIP took before the move. Runs
// alternate between the scenarios and each figure is the median of the runs.
//
// It is a measurement, not a check: it runs only with VIPD_FLOWFWD_BENCH=1 (and should run without -race):
//
//	VIPD_FLOWFWD_BENCH=1 go test -run TestForwardingCost -v ./vip/flowfwd/
func TestForwardingCost(t *testing.T) {
	if os.Getenv("VIPD_FLOWFWD_BENCH") == "" {
		t.Skip("a benchmark: set VIPD_FLOWFWD_BENCH=1 to run it")
	}
	runs := envInt("VIPD_FLOWFWD_RUNS", 7)
	pings := envInt("VIPD_FLOWFWD_PINGS", 20000)
	streamFor := time.Duration(envInt("VIPD_FLOWFWD_STREAM_MS", 3000)) * time.Millisecond
	const rate = 125_000_000 // bytes/s: 1 Gbit/s

	l := newLAN(t, 2)
	a, b := l.nodes[0], l.nodes[1]
	vip := vipV4
	vips, ports := []netip.Addr{vip}, []uint16{port, sinkPort}
	a.addLo(t, vip)
	serve(t, a.ns, 'A')
	serve(t, b.ns, 'B')
	sink(t, a.ns)
	sink(t, b.ns)

	// Connections made while A holds the VIP become drained flows after the move.
	l.pointVIP(t, vip, a)
	oldEcho, ids := dialMany(t, l.client, vip, 1)
	requireAll(t, ids, 'A', "old echo connection")
	oldSink := dialSink(t, l.client, vip)
	// The direct baseline: connections to A's own address take the path the VIP took before the move
	// (client, bridge, A) without ever needing the client's neighbour entry to flip back, which would send
	// B's flows' stray ACKs to A.
	directEcho, ids := dialMany(t, l.client, a.addr(true), 1)
	requireAll(t, ids, 'A', "direct echo connection")
	directSink := dialSink(t, l.client, a.addr(true))

	tbl := newTable(t, b)
	if err := tbl.Mark(vips, ports); err != nil {
		t.Fatal(err)
	}
	b.addLo(t, vip)
	if err := tbl.Forward(a.addr(true), b.ifname, vips, ports); err != nil {
		t.Fatal(err)
	}
	l.pointVIP(t, vip, b)
	newEcho, ids := dialMany(t, l.client, vip, 1)
	requireAll(t, ids, 'B', "new echo connection")
	newSink := dialSink(t, l.client, vip)

	var direct, forwarded, local, bare []time.Duration
	for range runs {
		direct = append(direct, rtt(t, directEcho[0], pings))
		forwarded = append(forwarded, rtt(t, oldEcho[0], pings))
		local = append(local, rtt(t, newEcho[0], pings))
	}
	// Streams twice: as the veths carry them by default (TCP segmentation offload: up to 64 KiB per
	// packet, as GRO on a real NIC would deliver them to B), then in single-segment packets of at most the
	// 1500-byte MTU (gso_max_segs 1 on the client's bridge), the per-packet worst case.
	type cpuRuns struct{ direct, forwarded, local []cpuSample }
	var tso, mtu cpuRuns
	for _, m := range []*cpuRuns{&tso, &mtu} {
		if m == &mtu {
			run(t, "ip", "-n", l.client.name, "link", "set", "br0", "gso_max_segs", "1")
		}
		for range runs {
			m.direct = append(m.direct, paced(t, directSink, rate, streamFor))
			m.forwarded = append(m.forwarded, paced(t, oldSink, rate, streamFor))
			m.local = append(m.local, paced(t, newSink, rate, streamFor))
		}
	}
	st, err := tbl.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// B's own flows with no vipd rules at all: what a local flow paid for them.
	if err := tbl.Close(); err != nil {
		t.Fatal(err)
	}
	for range runs {
		bare = append(bare, rtt(t, newEcho[0], pings))
	}

	md, mf, ml, mb := median(direct), median(forwarded), median(local), median(bare)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("load average during the run (other processes share the machine): %s", strings.TrimSpace(string(load)))
	}
	t.Logf("round trip of a 32-byte ping-pong, median of %d runs of %d (each run's median):", runs, pings)
	t.Logf("  direct to A            %8v   runs %v", md, direct)
	t.Logf("  forwarded B -> A       %8v   runs %v   (+%v)", mf, forwarded, mf-md)
	t.Logf("  local to B, rules      %8v   runs %v", ml, local)
	t.Logf("  local to B, no rules   %8v   runs %v   (rules cost %v)", mb, bare, ml-mb)
	for _, m := range []struct {
		name string
		r    cpuRuns
	}{{"TSO packets", tso}, {"MTU-sized packets", mtu}} {
		t.Logf("paced 1 Gbit/s stream for %v in %s, median of %d runs (CPU in cores: process + ksoftirqd; machine softirq):",
			streamFor, m.name, runs)
		t.Logf("  %-18s %s", "direct to A", summarize(m.r.direct))
		t.Logf("  %-18s %s", "forwarded B -> A", summarize(m.r.forwarded))
		t.Logf("  %-18s %s", "local to B", summarize(m.r.local))
		t.Logf("  forwarding cost (forwarded - direct): %.3f cores at 1 Gbit/s",
			medianCPU(m.r.forwarded)-medianCPU(m.r.direct))
	}
	t.Logf("forwarded by B in all: %d packets, %d bytes (%.0f bytes per packet)",
		st.Forwarded, st.ForwardedBytes, float64(st.ForwardedBytes)/max(1, float64(st.Forwarded)))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func dialSink(t *testing.T, client *ns, to netip.Addr) *net.TCPConn {
	t.Helper()
	var c net.Conn
	var err error
	client.do(t, func() {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
		c, err = d.Dial("tcp", netip.AddrPortFrom(to, sinkPort).String())
	})
	if err != nil {
		t.Fatalf("dial sink: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// rtt returns the median round trip of n 32-byte ping-pongs on c.
func rtt(t *testing.T, c *net.TCPConn, n int) time.Duration {
	t.Helper()
	out, in := make([]byte, 32), make([]byte, 32)
	samples := make([]time.Duration, n)
	_ = c.SetDeadline(time.Now().Add(time.Minute)) // bounds the run
	defer c.SetDeadline(time.Time{})
	for i := range samples {
		start := time.Now()
		if _, err := c.Write(out); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			t.Fatalf("pong %d: %v", i, err)
		}
		samples[i] = time.Since(start)
	}
	return median(samples)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

type cpuSample struct {
	cores   float64 // process + ksoftirqd CPU time / wall time
	softirq float64 // machine-wide softirq time / wall time
	gbps    float64
}

func summarize(s []cpuSample) string {
	var cores, soft, gbps []float64
	for _, x := range s {
		cores, soft, gbps = append(cores, x.cores), append(soft, x.softirq), append(gbps, x.gbps)
	}
	return fmt.Sprintf("%.3f cores (runs %.3f), machine softirq %.3f cores, %.2f Gbit/s",
		medianF(cores), cores, medianF(soft), medianF(gbps))
}

func medianCPU(s []cpuSample) float64 {
	var c []float64
	for _, x := range s {
		c = append(c, x.cores)
	}
	return medianF(c)
}

func medianF(f []float64) float64 {
	s := slices.Clone(f)
	slices.Sort(s)
	return s[len(s)/2]
}

// paced streams on c at rate bytes/s for d, and returns the CPU it cost. It paces in user space, one
// write of rate/100 bytes every 10 ms, not with the kernel's TCP pacing: the kernel paces from a timer, whose
// softirq runs in whichever task it interrupts (other processes on a shared machine), while a write pushes
// its segments (and the bridge, B and A process them) in this process's own threads or in ksoftirqd.
func paced(t *testing.T, c *net.TCPConn, rate uint64, d time.Duration) cpuSample {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	const tick = 10 * time.Millisecond
	buf := make([]byte, int(rate)/int(time.Second/tick))
	before := sampleCPU(t)
	start := time.Now()
	deadline := start.Add(d)
	_ = c.SetWriteDeadline(deadline.Add(5 * time.Second)) // bounds the run
	defer c.SetWriteDeadline(time.Time{})
	tk := time.NewTicker(tick)
	defer tk.Stop()
	var sent int64
	for time.Now().Before(deadline) {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		<-tk.C
	}
	// The bytes still queued belong to this run: wait (bounded) until the peer acknowledged them all.
	drained := time.Now().Add(10 * time.Second)
	for {
		var queued int
		var serr error
		_ = raw.Control(func(fd uintptr) { queued, serr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		if serr != nil || queued == 0 || time.Now().After(drained) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	wall := time.Since(start)
	after := sampleCPU(t)
	return cpuSample{
		cores:   (after.proc - before.proc + after.ksoftirqd - before.ksoftirqd).Seconds() / wall.Seconds(),
		softirq: (after.softirq - before.softirq).Seconds() / wall.Seconds(),
		gbps:    float64(sent*8) / wall.Seconds() / 1e9,
	}
}

type cpuTimes struct{ proc, ksoftirqd, softirq time.Duration }

// clockTick is USER_HZ, the unit of /proc's CPU times (100 on every Linux architecture vipd builds for).
const clockTick = 100

func sampleCPU(t *testing.T) cpuTimes {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	var c cpuTimes
	c.proc = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	// cpu  user nice system idle iowait irq softirq ...
	fields := strings.Fields(strings.SplitN(string(stat), "\n", 2)[0])
	if j, err := strconv.ParseInt(fields[7], 10, 64); err == nil {
		c.softirq = time.Duration(j) * time.Second / clockTick
	}
	tasks, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range tasks {
		comm, err := os.ReadFile(p)
		if err != nil || !strings.HasPrefix(string(comm), "ksoftirqd/") {
			continue
		}
		st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15): fields after the ")" start at state (3).
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		c.ksoftirqd += time.Duration(u+s) * time.Second / clockTick
	}
	return c
}
