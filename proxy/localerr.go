package proxy

import (
	"errors"
	"log/slog"
)

// errLocal marks a dial that failed for a local reason: the client is refused at once, no other backend is
// tried (the next dial would fail the same way, and only adds load to a node already short).
var errLocal = errors.New("local resource error")

// localError counts and logs a local resource error of op (opAccept or opDial): at most one line a minute
// per op, so a node at its fd limit says so once, not once per connection.
func (p *Proxy) localError(op, errno string, err error, attrs ...any) {
	p.metrics.localError(errno)
	l := p.dialLog
	if op == opAccept {
		l = p.acceptLog
	}
	l.Log(p.log, slog.LevelWarn, "local resource error: "+op+" failed; not the backend's fault",
		append([]any{"errno", errno, "err", err}, attrs...)...)
}

// Operations whose local errors are logged apart.
const (
	opAccept = "accept"
	opDial   = "dial"
)
