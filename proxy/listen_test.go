package proxy

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sockopt(t *testing.T, fd, level, opt int) int {
	t.Helper()
	v, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// acceptRaw accepts one pending connection from ln the way Serve does: raw accept4 on a duplicate of the
// listening socket.
func acceptRaw(t *testing.T, ln net.Listener) int {
	t.Helper()
	lfd, ok := dupListener(ln)
	if !ok {
		t.Fatal("no duplicate of a Listen listener")
	}
	t.Cleanup(func() { rawClose(lfd) })
	deadline := time.Now().Add(5 * time.Second)
	for {
		fd, e := rawAccept(lfd)
		if e == 0 {
			t.Cleanup(func() { rawClose(fd) })
			return fd
		}
		if e != unix.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("accept4: %v", e)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestListenKeepAliveInherited checks the premise of Listen: sockets accepted from it the way Serve does
// (raw accept4) carry the proxy's keepalive settings and TCP_NODELAY without any per-connection call.
func TestListenKeepAliveInherited(t *testing.T) {
	tests := []struct {
		name      string
		keepAlive time.Duration
		wantOn    int
		wantIdle  int
	}{
		{"default", 0, 1, int(DefaultKeepAlive / time.Second)},
		{"custom", 7 * time.Second, 1, 7},
		{"disabled", -1, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(Config{KeepAlive: tt.keepAlive}, newFakeBackends())
			if err != nil {
				t.Fatal(err)
			}
			ln, err := p.Listen(t.Context(), "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ln.Close() })
			dial(t, ln.Addr().String())
			tc := acceptRaw(t, ln)
			if got := sockopt(t, tc, unix.IPPROTO_TCP, unix.TCP_NODELAY); got != 1 {
				t.Fatalf("TCP_NODELAY = %d, want 1 (inherited from the listener)", got)
			}
			if got := sockopt(t, tc, unix.SOL_SOCKET, unix.SO_KEEPALIVE); got != tt.wantOn {
				t.Fatalf("SO_KEEPALIVE = %d, want %d", got, tt.wantOn)
			}
			if tt.wantIdle > 0 {
				if got := sockopt(t, tc, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); got != tt.wantIdle {
					t.Fatalf("TCP_KEEPIDLE = %d, want %d", got, tt.wantIdle)
				}
				if got := sockopt(t, tc, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL); got != tt.wantIdle {
					t.Fatalf("TCP_KEEPINTVL = %d, want %d", got, tt.wantIdle)
				}
			}
		})
	}
}
