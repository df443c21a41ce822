package proxy

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// RecommendedBacklog is the listen queue a frontend should have: the connections the kernel may hold
// completed but not yet accepted. Serve accepts far faster than it serves (see acceptBatch), so the queue
// only absorbs what arrives while the accepting reactor is busy with one round or off its CPU. Measured with
// the reconnect storm of make bench-proxy (8,000 clients connecting within 100-450 ms, proxy on one shared
// core): the queue peaked at 500-1,300 and never overflowed at 4096, and overflowed at 1024 (each dropped
// client then waits a second for its SYN to be resent: the storm took 1.1-2.4 s instead of 0.4-0.9 s).
// HAProxy 2.6 under the same storm peaked at 4,680. 4096 is also the kernel's default for
// net.core.somaxconn since Linux 5.4; older kernels and some distributions set 128 or 1024. A node whose
// VIP carries many more clients, or whose CPUs are shared with other work, wants more (the queue costs
// nothing until it is used).
const RecommendedBacklog = 4096

// somaxconnPath is where Linux publishes net.core.somaxconn for the caller's network namespace.
const somaxconnPath = "/proc/sys/net/core/somaxconn"

// ErrBacklogTooSmall is wrapped by CheckSomaxconn's error when net.core.somaxconn is below the backlog asked
// for.
var ErrBacklogTooSmall = errors.New("listen backlog capped by net.core.somaxconn")

// CheckSomaxconn reports whether listeners in this network namespace can queue backlog connections. Linux
// caps every listen(2) backlog at net.core.somaxconn, and Go's net.Listen (so Proxy.Listen) asks for exactly
// somaxconn, so that sysctl is the listen queue. The error wraps ErrBacklogTooSmall, names the value found
// and the sysctl to set, or says why the value could not be read. Listen logs it as a warning with
// RecommendedBacklog; the agent may call it at start to say so once, before any listener exists.
func CheckSomaxconn(backlog int) error {
	b, err := os.ReadFile(somaxconnPath)
	if err != nil {
		return fmt.Errorf("read net.core.somaxconn: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("read net.core.somaxconn: %q is not a number", strings.TrimSpace(string(b)))
	}
	if v < backlog {
		return fmt.Errorf("%w: net.core.somaxconn is %d, below %d: a burst of reconnects (after a VIP move) "+
			"overflows the queue and dropped clients retry only after a second; set it with "+
			"`sysctl -w net.core.somaxconn=%d` (and in /etc/sysctl.d/ to keep it), then restart vipd",
			ErrBacklogTooSmall, v, backlog, backlog)
	}
	return nil
}
