package health

import "fmt"

// State is the health of one backend as decided by its Tracker.
type State int

const (
	// StateUnknown is the state of a backend that has not yet been checked
	// enough to decide; it receives no traffic.
	StateUnknown State = iota
	// StateHealthy backends receive new connections.
	StateHealthy
	// StateUnhealthy backends receive no new connections until they pass
	// rise consecutive checks.
	StateUnhealthy
)

// String returns "unknown", "healthy" or "unhealthy", the words used in logs,
// the admin API and metric labels.
func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateHealthy:
		return "healthy"
	case StateUnhealthy:
		return "unhealthy"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// MarshalText makes a State appear as its word in JSON (for /v1/backends).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
