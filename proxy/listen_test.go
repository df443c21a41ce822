package proxy

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sockopt(t *testing.T, c socket, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
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
			ra, ok := newRawAccepter(ln)
			if !ok {
				t.Fatal("no raw accepter for a Listen listener")
			}
			f, err := ra.accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Close() })
			tc := f
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
