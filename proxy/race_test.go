package proxy

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestResetsRaceTraffic resets many clients while their backends trickle bytes (the load after a docker
// pause/unpause that once crashed the goroutine-per-direction data path): every reset must end its
// connection while events for its sockets may still be queued in the reactor, and the pooled connections
// reused at once must not receive them (each event carries its connection's slot and generation).
func TestResetsRaceTraffic(t *testing.T) {
	const (
		n      = 64
		rounds = 4
	)
	be := startBackend(t, func(c net.Conn) {
		b := []byte{'x'}
		deadline := time.Now().Add(5 * time.Second)
		for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
			if _, err := c.Write(b); err != nil {
				return
			}
			if i%8 == 0 {
				time.Sleep(10 * time.Microsecond)
			}
		}
	})
	tp := startProxy(t, Config{IdleTimeout: 5 * time.Second}, newFakeBackends(be.addr))
	for range rounds {
		conns := make([]*net.TCPConn, n)
		for i := range conns {
			conns[i] = dial(t, tp.addr)
		}
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Go(func() {
				buf := make([]byte, 64)
				// Read a little so the downstream direction has moved bytes several times, then reset.
				if _, err := io.ReadAtLeast(c, buf, 1+i%32); err != nil {
					t.Errorf("read before reset: %v", err)
				}
				_ = c.SetLinger(0)
				_ = c.Close()
			})
		}
		wg.Wait()
	}
	waitFor(t, 10*time.Second, "every connection released", func() bool { return tp.p.Counters().Active == 0 })
}
