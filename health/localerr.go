package health

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// localErrnos are the errors that say this node is out of a resource (descriptors, buffers, memory, local
// ports), not that the backend is down. A check that fails with one of them proves nothing about the backend,
// so it is not fed into the backend's rise/fall: otherwise a node at its fd limit would mark every backend
// unhealthy and hand the VIP away (issue 10.5). The proxy has the same list for its dials.
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

// localErrorLogInterval is how often a run of local errors is logged: one line, then silence for this long,
// then one line with the number of errors not logged meanwhile.
const localErrorLogInterval = time.Minute

// rateLog writes at most one line per interval and counts the lines it held back.
type rateLog struct {
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

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
