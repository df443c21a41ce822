package tlsgossip

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// Compare tlsgossip with memberlist's NetTransport (UDP packets, plain TCP streams) in the same setup:
//
//	go test -run XXX -bench . -benchtime 3s ./internal/tlsgossip
//
// BenchmarkPing: one memberlist ping/ack round trip between two nodes (ns/op is the RTT as the caller sees it).
// BenchmarkStreamDial: opening one stream (TCP, or TCP + TLS 1.3 handshake with client certificates + mode
// byte and acknowledgement) and closing it: the price of each push-pull and TCP fallback probe.
// BenchmarkClusterCPU: the CPU a 3-node cluster with the cluster package's timings spends per second of
// gossip (cpu-ms/s) in the steady state, measured with getrusage over the whole test process (run it with
// -benchtime 5x: each iteration is one second).

func transports() []struct {
	name  string
	plain bool
} {
	return []struct {
		name  string
		plain bool
	}{{"tls", false}, {"udp", true}}
}

func BenchmarkPing(b *testing.B) {
	for _, tr := range transports() {
		b.Run(tr.name, func(b *testing.B) {
			p := newPKI(b)
			ms := startCluster(b, p, 2, memberOpts{plain: tr.plain, timing: production})
			n := ms[1].ml.LocalNode()
			addr := &net.UDPAddr{IP: n.Addr, Port: int(n.Port)}
			for b.Loop() {
				if _, err := ms[0].ml.Ping(n.Name, addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStreamDial(b *testing.B) {
	for _, tr := range transports() {
		b.Run(tr.name, func(b *testing.B) {
			p := newPKI(b)
			ms := startCluster(b, p, 2, memberOpts{plain: tr.plain, timing: production})
			var dial func() (net.Conn, error)
			if tr.plain {
				addr := ms[1].addr()
				dial = func() (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }
			} else {
				a := memberlist.Address{Addr: ms[1].addr(), Name: ms[1].name}
				dial = func() (net.Conn, error) { return ms[0].tr.DialAddressTimeout(a, time.Second) }
			}
			for b.Loop() {
				c, err := dial()
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func BenchmarkClusterCPU(b *testing.B) {
	for _, tr := range transports() {
		b.Run(tr.name, func(b *testing.B) {
			p := newPKI(b)
			startCluster(b, p, 3, memberOpts{plain: tr.plain, timing: production})
			const window = time.Second
			var total time.Duration
			// Let the start-up (handshakes, the first push-pulls) pass: the figure is the steady state.
			<-time.After(2 * window)
			b.ResetTimer()
			for range b.N {
				before := cpuTime(b)
				// A benchmark of an idle cluster has to let time pass: there is no condition to wait for.
				<-time.After(window)
				total += cpuTime(b) - before
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N)/window.Seconds(), "cpu-ms/s")
		})
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
