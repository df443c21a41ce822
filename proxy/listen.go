package proxy

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listener marks a listening socket made by Proxy.Listen: accepted sockets inherit its keepalive options
// and TCP_NODELAY from the kernel, so Serve does not set them again per connection (unless SetConfig has
// changed KeepAlive since: keepAlive is what the listening socket passes on).
type listener struct {
	*net.TCPListener
	keepAlive time.Duration
}

// Listen opens a TCP listener on address for Serve. Serve works with any TCP listener, but on one from
// Listen the keepalive options are set once on the listening socket (accepted sockets inherit them)
// instead of with three or four setsockopt calls on every accepted connection.
//
// The listen queue is net.core.somaxconn (Go asks for the kernel's maximum); when that is below
// RecommendedBacklog, Listen logs a warning naming the value and the sysctl to set (see CheckSomaxconn).
//
// Listen does not check address against the backends: they change at run time, and only the agent knows
// every frontend, so refusing a configuration whose backend is one of its own listen addresses is the
// agent's job. The proxy's own backstop is at dial time (see loop.go): once Serve runs on the listener, a
// dial to its address is refused, so a loop cannot form even through a host name.
func (p *Proxy) Listen(ctx context.Context, address string) (net.Listener, error) {
	ka := p.config().KeepAlive
	lc := net.ListenConfig{
		KeepAlive: -1, // Go must not set its own per-connection defaults; the listener's are inherited
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if serr = setKeepAlive(int(fd), ka); serr == nil {
					// Inherited too: Serve's raw accepts do not set it per connection as net's Accept does.
					serr = rawSetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", address, err)
	}
	if err := CheckSomaxconn(RecommendedBacklog); err != nil {
		p.log.Warn("listen queue may be too short for a reconnect storm", "listen", address, "err", err)
	}
	return listener{ln.(*net.TCPListener), ka}, nil
}

// setKeepAlive enables keepalive probes after ka of silence, every ka (ka < 0: disabled).
func setKeepAlive(fd int, ka time.Duration) error {
	if ka < 0 {
		return rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
	}
	secs := max(1, int(ka/time.Second))
	if err := rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); err != nil {
		return fmt.Errorf("set SO_KEEPALIVE: %w", err)
	}
	if err := rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs); err != nil {
		return fmt.Errorf("set TCP_KEEPIDLE: %w", err)
	}
	if err := rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs); err != nil {
		return fmt.Errorf("set TCP_KEEPINTVL: %w", err)
	}
	return nil
}
