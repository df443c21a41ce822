package cluster

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Refused connections are logged at most once per peer IP per refusalLogEvery, so a stranger hammering the
// Raft port costs a log line a minute, not one per attempt; every refusal is counted.
const (
	refusalLogEvery = time.Minute
	refusalLogPeers = 4096 // remembered peer IPs; beyond it, refusals are only counted
)

// rateLog logs refusals rate-limited per peer IP and counts all of them.
type rateLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	count atomic.Uint64

	mu   sync.Mutex
	last map[string]time.Time
}

func newRateLog(log *slog.Logger, every time.Duration, now func() time.Time) *rateLog {
	return &rateLog{log: log, every: every, now: now, last: map[string]time.Time{}}
}

// refused counts one refused peer at addr (host:port) and logs it unless the same IP was logged within
// every.
func (r *rateLog) refused(addr, reason string, err error) {
	r.count.Add(1)
	if !r.allow(hostOf(addr)) {
		return
	}
	r.log.Warn("refused Raft connection", "peer", addr, "reason", reason, "err", err,
		"note", "logged at most once per peer IP per minute")
}

func (r *rateLog) allow(ip string) bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.last[ip]; ok && now.Sub(t) < r.every {
		return false
	}
	if len(r.last) >= refusalLogPeers {
		for k, t := range r.last {
			if now.Sub(t) >= r.every {
				delete(r.last, k)
			}
		}
		if len(r.last) >= refusalLogPeers {
			return false
		}
	}
	r.last[ip] = now
	return true
}

// total is the number of refusals so far.
func (r *rateLog) total() uint64 { return r.count.Load() }
