package health

import "time"

// Clock is the Monitor's only source of time, so the probe schedule can be
// driven by a fake clock in tests. Implementations must be safe for
// concurrent use.
type Clock interface {
	// Now returns the current time; used for LastCheck, Since and latency.
	Now() time.Time
	// After returns a channel that receives once d has elapsed. A channel
	// that is never read must not leak (time.After has guaranteed this since
	// Go 1.23).
	After(d time.Duration) <-chan time.Time
}

// realClock is the wall clock, used when Config.Clock is nil.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
