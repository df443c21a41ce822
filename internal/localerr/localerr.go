// Package localerr tells this node's own trouble from a peer's: an error that says the machine is out of a
// resource (descriptors, socket buffers, memory, local ports) proves nothing about the backend or peer the
// operation was aimed at. The proxy's dials and accepts and the health checks use it, so that a node at its
// fd limit does not mark every backend unhealthy and hand the VIP away (issue 10.5). It also holds the one
// rate-limited logger those paths share.
package localerr

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errnos are the local resource errors: descriptors (EMFILE, ENFILE), socket buffers (ENOBUFS), memory
// (ENOMEM), local ports or a source address (EADDRNOTAVAIL).
var errnos = []syscall.Errno{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.EADDRNOTAVAIL}

// Errno returns the errno's name (e.g. "EMFILE") when err is a local resource error.
func Errno(err error) (string, bool) {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return unix.ErrnoName(e), true
		}
	}
	return "", false
}

// LogInterval is how often a run of local errors is logged: one line, then at most one a minute, carrying the
// number of lines held back.
const LogInterval = time.Minute

// RateLog writes at most one line per Interval and counts the lines it held back. The zero value needs
// Interval set; Now nil means time.Now. Safe for concurrent use.
type RateLog struct {
	Interval time.Duration
	Now      func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Log writes msg at level unless a line was written less than Interval ago; the line carries the number of
// lines suppressed since the previous one.
func (r *RateLog) Log(l *slog.Logger, level slog.Level, msg string, attrs ...any) {
	r.mu.Lock()
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	if !r.last.IsZero() && now.Sub(r.last) < r.Interval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	l.Log(context.Background(), level, msg, append(attrs, "suppressed", n)...)
}

// Suppressed is the number of lines held back since the last one written.
func (r *RateLog) Suppressed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.suppressed
}
