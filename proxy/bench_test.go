package proxy

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Quick in-process benchmarks for iterating on the data path; `make bench` (bench/) is the real,
// cross-tool measurement with the proxy on its own core. Each has a "direct" twin without the proxy, so
// the difference is the proxy's cost; cpu-µs/op is the whole process (client, proxy and backend).

func benchTargets(b *testing.B, handler func(net.Conn)) map[string]string {
	be := startBackend(b, handler)
	tp := startProxy(b, Config{}, newFakeBackends(be.addr))
	return map[string]string{"direct": be.addr, "vipd": tp.addr, "iocopy": startIOCopyProxy(b, be.addr)}
}

var benchNames = []string{"direct", "iocopy", "vipd"}

// startIOCopyProxy is the naive reference: two io.Copy goroutines per connection (splice, but a pipe held
// per direction while idle).
func startIOCopyProxy(b *testing.B, backend string) string {
	be := startBackend(b, func(c net.Conn) {
		bc, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		defer bc.Close()
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(bc, c)
			_ = bc.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		_, _ = io.Copy(c, bc)
		_ = c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return be.addr
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkProxyBulk(b *testing.B) {
	const chunk = 1 << 20
	done := make(chan int64, 1)
	targets := benchTargets(b, func(c net.Conn) {
		n, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 256<<10))
		done <- n
	})
	for _, name := range benchNames {
		b.Run(name, func(b *testing.B) {
			c := dial(b, targets[name])
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			_ = c.CloseWrite()
			if n := <-done; n != int64(b.N)*chunk {
				b.Fatalf("sink got %d bytes, want %d", n, int64(b.N)*chunk)
			}
		})
	}
}

func BenchmarkProxyShortConn(b *testing.B) {
	targets := benchTargets(b, func(c net.Conn) {
		req := make([]byte, 32)
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		_, _ = c.Write(make([]byte, 64))
	})
	for _, name := range benchNames {
		b.Run(name, func(b *testing.B) {
			req, reply := make([]byte, 32), make([]byte, 64)
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			b.ResetTimer()
			var worst time.Duration
			for range b.N {
				t0 := time.Now()
				c, err := net.Dial("tcp", targets[name])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, reply); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
				worst = max(worst, time.Since(t0))
			}
			b.StopTimer()
			b.ReportMetric(float64(worst.Microseconds()), "max-µs")
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
