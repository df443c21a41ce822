package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// localErrnos say this node is out of a resource — descriptors (EMFILE, ENFILE), socket buffers (ENOBUFS),
// memory (ENOMEM), local ports or a source address (EADDRNOTAVAIL) — not that the backend is down. A dial
// failing with one of them is never reported to the health source nor counted as the backend's dial error:
// at the fd limit every backend would otherwise be marked unhealthy and the node would hand the VIP away
// (issue 10.5). health has the same list for its checks.
var localErrnos = []syscall.Errno{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.EADDRNOTAVAIL}

// localErrno returns the errno name when err is a local resource error.
func localErrno(err error) (string, bool) {
	for _, e := range localErrnos {
		if errors.Is(err, e) {
			return unix.ErrnoName(e), true
		}
	}
	return "", false
}

// errLocal marks a dial that failed for a local reason: the client is refused at once, no other backend is
// tried (the next dial would fail the same way, and only adds load to a node already short).
var errLocal = errors.New("local resource error")

// localErrorLogInterval is how often a run of local errors is logged: one line, then at most one a minute,
// carrying the number of lines held back.
const localErrorLogInterval = time.Minute

// rateLog writes at most one line per interval and counts the lines it held back.
type rateLog struct {
	interval time.Duration
	now      func() time.Time // time.Now outside tests

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newRateLog(interval time.Duration) *rateLog { return &rateLog{interval: interval, now: time.Now} }

// log writes msg unless a line was written less than interval ago; the line carries the number of lines
// suppressed since the previous one.
func (r *rateLog) log(l *slog.Logger, level slog.Level, msg string, attrs ...any) {
	r.mu.Lock()
	now := r.now()
	if !r.last.IsZero() && now.Sub(r.last) < r.interval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	l.Log(context.Background(), level, msg, append(attrs, "suppressed", n)...)
}

// localError counts and logs a local resource error of op (opAccept or opDial): at most one line a minute
// per op, so a node at its fd limit says so once, not once per connection.
func (p *Proxy) localError(op, errno string, err error, attrs ...any) {
	p.metrics.localError(errno)
	l := p.dialLog
	if op == opAccept {
		l = p.acceptLog
	}
	l.log(p.log, slog.LevelWarn, "local resource error: "+op+" failed; not the backend's fault",
		append([]any{"errno", errno, "err", err}, attrs...)...)
}

// Operations whose local errors are logged apart.
const (
	opAccept = "accept"
	opDial   = "dial"
)
