package tlsgossip

import (
	"sync"
	"time"
)

// maxLimiterKeys bounds the limiter's memory under a flood from many source addresses.
const maxLimiterKeys = 4096

// limiter lets one event per key through per period and counts the ones it suppressed, so a refused peer is
// logged once a minute with how many refusals the line stands for.
type limiter struct {
	every time.Duration

	mu   sync.Mutex
	keys map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

func newLimiter(every time.Duration) *limiter {
	return &limiter{every: every, keys: map[string]*limitState{}}
}

// allow reports whether an event for key at now should be logged, and how many were suppressed before it.
func (l *limiter) allow(key string, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[key]
	if s != nil && now.Sub(s.last) < l.every {
		s.suppressed++
		return false, 0
	}
	if s == nil {
		if len(l.keys) >= maxLimiterKeys {
			l.prune(now)
		}
		s = &limitState{}
		l.keys[key] = s
	}
	suppressed, s.last, s.suppressed = s.suppressed, now, 0
	return true, suppressed
}

// prune forgets keys quiet for a period, or all of them if none is (a flood from that many addresses then
// costs one line per address per pruning, which stays bounded by the accept rate).
func (l *limiter) prune(now time.Time) {
	for k, s := range l.keys {
		if now.Sub(s.last) >= l.every {
			delete(l.keys, k)
		}
	}
	if len(l.keys) >= maxLimiterKeys {
		clear(l.keys)
	}
}
