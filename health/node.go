package health

import (
	"fmt"
	"sync"
)

// NodeStatus is this node's own health: whether it is fit to receive the
// VIP's traffic. It is comparable, so a change is detected with !=.
type NodeStatus struct {
	// Healthy is ListenerUp && HealthyBackends >= the Node's minimum.
	Healthy    bool `json:"healthy"`
	ListenerUp bool `json:"listener_up"`
	// HealthyBackends and TotalBackends count the Monitor's backends.
	HealthyBackends int `json:"healthy_backends"`
	TotalBackends   int `json:"total_backends"`
	// Reason says why, for /healthz and logs, e.g. "listener down" or
	// "1 of 3 backends healthy, need 2".
	Reason string `json:"reason"`
}

// Node is this node's own health: its listener is up and at least
// minHealthy backends are healthy. The cluster uses it to keep the VIP only
// on a node that can actually serve.
//
// Node has no goroutine and no Run: NewNode registers a callback with the
// Monitor, which calls it synchronously after every backend state change,
// and SetListenerUp recomputes directly. So Status is always current and
// subscribers are signalled exactly when the NodeStatus value changes. All
// methods are safe for concurrent use.
type Node struct {
	m          *Monitor
	minHealthy int

	mu         sync.Mutex // guards the fields below
	listenerUp bool
	last       NodeStatus // last status subscribers were told about
	subs       map[uint64]chan struct{}
	nextSub    uint64
}

// NewNode returns the health of a node proxying to m's backends, healthy with
// at least m's Config.MinHealthy healthy backends (validated by NewMonitor; 0
// is taken as 1: a node with no healthy backend is never healthy). The
// listener starts down (call SetListenerUp once it listens).
func NewNode(m *Monitor) *Node {
	n := &Node{m: m, minHealthy: max(m.cfg.MinHealthy, 1), subs: make(map[uint64]chan struct{})}
	n.last = n.computeLocked()
	m.onChange(n.recompute)
	return n
}

// SetListenerUp records whether the proxy's listener is accepting.
func (n *Node) SetListenerUp(up bool) {
	n.mu.Lock()
	n.listenerUp = up
	n.mu.Unlock()
	n.recompute()
}

// Status returns the node's current health.
func (n *Node) Status() NodeStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.computeLocked()
}

// Subscribe returns a cap-1 channel signalled (without blocking) whenever
// Status changes, and a func that ends the subscription; subscribers re-read
// Status. The channel is never closed.
func (n *Node) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	id := n.nextSub
	n.nextSub++
	n.subs[id] = ch
	n.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.subs, id)
			n.mu.Unlock()
		})
	}
}

// recompute signals subscribers if the status differs from the last one
// they were told about. It reads the Monitor's latest snapshot, so when
// changes race, the last call to run still sees the final state.
func (n *Node) recompute() {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.computeLocked()
	if s == n.last {
		return
	}
	n.last = s
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// computeLocked derives the status from the listener flag and the Monitor's
// healthy snapshot. n.mu must be held.
func (n *Node) computeLocked() NodeStatus {
	s := NodeStatus{
		ListenerUp:      n.listenerUp,
		HealthyBackends: len(n.m.Healthy()),
		TotalBackends:   n.m.total(),
	}
	enough := s.HealthyBackends >= n.minHealthy
	s.Healthy = s.ListenerUp && enough
	backends := fmt.Sprintf("%d of %d backends healthy, need %d", s.HealthyBackends, s.TotalBackends, n.minHealthy)
	switch {
	case s.Healthy:
		s.Reason = "listener up, " + backends
	case !s.ListenerUp && !enough:
		s.Reason = "listener down; " + backends
	case !s.ListenerUp:
		s.Reason = "listener down"
	default:
		s.Reason = backends
	}
	return s
}
