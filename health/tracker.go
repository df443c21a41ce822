package health

// Tracker is the pure rise/fall state machine of one backend: it damps
// flapping by requiring several consecutive results before changing state.
// It holds no clock and no lock; a Tracker is not safe for concurrent use
// (the Monitor serialises access to it).
//
// The rules, in the spirit of Envoy's healthy/unhealthy thresholds:
//
//   - A new Tracker is StateUnknown.
//   - From StateUnknown, one success makes it StateHealthy: a freshly started
//     proxy should serve as soon as a backend answers, rather than wait rise
//     intervals (Envoy's first-pass rule). fall consecutive failures make it
//     StateUnhealthy.
//   - From StateUnhealthy, rise consecutive successes make it StateHealthy.
//   - From StateHealthy, fall consecutive failures make it StateUnhealthy.
//
// Any result of the opposite kind resets the running count.
type Tracker struct {
	rise, fall int
	state      State
	successes  int // consecutive successes since the last failure
	failures   int // consecutive failures since the last success
}

// NewTracker returns a Tracker in StateUnknown. rise and fall below 1 are
// treated as 1 (NewMonitor rejects them before they get here).
func NewTracker(rise, fall int) *Tracker {
	return &Tracker{rise: max(rise, 1), fall: max(fall, 1)}
}

// State returns the current state.
func (t *Tracker) State() State { return t.state }

// Observe records one check result and returns the resulting state and
// whether this observation changed it.
func (t *Tracker) Observe(ok bool) (State, bool) {
	if ok {
		t.successes++
		t.failures = 0
	} else {
		t.failures++
		t.successes = 0
	}
	next := t.state
	switch t.state {
	case StateUnknown:
		if ok {
			next = StateHealthy
		} else if t.failures >= t.fall {
			next = StateUnhealthy
		}
	case StateUnhealthy:
		if t.successes >= t.rise {
			next = StateHealthy
		}
	case StateHealthy:
		if t.failures >= t.fall {
			next = StateUnhealthy
		}
	}
	if next == t.state {
		return t.state, false
	}
	t.state = next
	t.successes, t.failures = 0, 0
	return next, true
}

// SetThresholds changes rise and fall (below 1 taken as 1) and keeps the state and the running counts: a
// reload that changes them does not make a backend healthy or unhealthy by itself; the next observation is
// judged by the new thresholds (so an unhealthy backend with 2 successes and rise lowered from 3 to 2 turns
// healthy on its next success).
func (t *Tracker) SetThresholds(rise, fall int) {
	t.rise, t.fall = max(rise, 1), max(fall, 1)
}
