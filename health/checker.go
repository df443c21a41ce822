package health

import (
	"context"
	"fmt"
	"net"
)

// Checker probes one backend. Check returns nil when addr is fit to receive
// connections and must give up when ctx is done (the Monitor bounds each
// check with Config.Timeout through ctx). Implementations must be safe for
// concurrent use: the Monitor checks every backend from its own goroutine.
type Checker interface {
	Check(ctx context.Context, addr string) error
}

// tcpChecker passes when a TCP connection to the backend can be established.
type tcpChecker struct{ dialer net.Dialer }

// NewTCPChecker returns a Checker that opens a TCP connection to the backend
// and closes it at once: it proves the backend's kernel accepts connections,
// nothing more (use NewHTTPChecker to ask the application).
func NewTCPChecker() Checker { return &tcpChecker{} }

func (c *tcpChecker) Check(ctx context.Context, addr string) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp connect %s: %w", addr, err)
	}
	return conn.Close()
}

var _ Checker = (*tcpChecker)(nil)
