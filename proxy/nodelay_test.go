package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestProxiedSocketsHaveNoDelay reads TCP_NODELAY back from both sockets of proxied connections, for every
// way Serve accepts (raw accept on a Listen listener, where it is inherited; raw accept on a plain
// net.Listen listener; ln.Accept on a wrapped listener) and both dial paths (raw connect to an IP literal,
// net.Dialer for a name). Without it a small reply waits for the peer's delayed ACK (Nagle): ~40 ms.
func TestProxiedSocketsHaveNoDelay(t *testing.T) {
	be := startBackend(t, echo)
	_, port, _ := net.SplitHostPort(be.addr)
	listeners := []struct {
		name string
		ln   func(t *testing.T, p *Proxy) net.Listener
	}{
		{"Listen", func(t *testing.T, p *Proxy) net.Listener {
			ln, err := p.Listen(context.Background(), "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return ln
		}},
		{"net.Listen", func(t *testing.T, _ *Proxy) net.Listener {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return ln
		}},
		{"wrapped", func(t *testing.T, _ *Proxy) net.Listener {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return wrappedListener{ln}
		}},
	}
	backends := []struct{ name, addr string }{{"raw", be.addr}, {"by-name", net.JoinHostPort("localhost", port)}}
	for _, lt := range listeners {
		for _, bt := range backends {
			t.Run(lt.name+"/"+bt.name, func(t *testing.T) {
				p, err := New(Config{Logger: testLogger(t)}, newFakeBackends(bt.addr))
				if err != nil {
					t.Fatal(err)
				}
				type opts struct{ client, backend int }
				got := make(chan opts, 1)
				p.hooks.connected = func(client, backend int) {
					got <- opts{noDelay(client), noDelay(backend)} // not sockopt: no t.Fatal off the test goroutine
				}
				ln := lt.ln(t, p)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- p.Serve(ctx, ln) }()
				t.Cleanup(func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("Serve: %v", err)
					}
				})
				c := dial(t, ln.Addr().String())
				if r, err := roundTrip(c, "hi"); err != nil || r != "hi" {
					t.Fatalf("round trip %q, %v", r, err)
				}
				select {
				case o := <-got:
					if o.client != 1 || o.backend != 1 {
						t.Fatalf("TCP_NODELAY: client socket %d, backend socket %d; want 1 and 1", o.client, o.backend)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no proxied connection seen")
				}
			})
		}
	}
}

// noDelay reads TCP_NODELAY of fd, or -1 when it cannot.
func noDelay(fd int) int {
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	if err != nil {
		return -1
	}
	return v
}
