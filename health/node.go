package health

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vipd/vipd/internal/notify"
)

// FrontendStatus is the health of one frontend (a listener and the Monitor of its backends).
type FrontendStatus struct {
	Name string `json:"name"`
	// Healthy is ListenerUp && HealthyBackends >= MinHealthy.
	Healthy    bool `json:"healthy"`
	ListenerUp bool `json:"listener_up"`
	// HealthyBackends counts the backends that may take new connections: healthy and not drained. A drained
	// backend does not count, since this node would not send it a connection.
	HealthyBackends int `json:"healthy_backends"`
	TotalBackends   int `json:"total_backends"`
	DrainedBackends int `json:"drained_backends"`
	// MinHealthy is the Monitor's Config.MinHealthy, 0 taken as 1.
	MinHealthy int `json:"min_healthy"`
	// Reason says why, e.g. "listener down" or "1 of 3 backends healthy, need 2".
	Reason string `json:"reason"`
}

// NodeStatus is this node's own health: whether it is fit to receive the VIP's traffic.
//
// Healthy means every frontend is healthy. A node with some frontends down is not Healthy, but it is not
// worthless either: it still serves the others. The VIP manager ranks nodes by Healthy, then by
// HealthyFrontends (vip/peers.go), and moves the VIP only to a strictly healthier peer. A node with no
// frontend (a witness) is never Healthy.
type NodeStatus struct {
	Healthy          bool `json:"healthy"`
	HealthyFrontends int  `json:"healthy_frontends"`
	TotalFrontends   int  `json:"total_frontends"`
	// ListenerUp is true when every frontend's listener is up (false with no frontend).
	ListenerUp bool `json:"listener_up"`
	// HealthyBackends and TotalBackends are summed over the frontends (see FrontendStatus).
	HealthyBackends int `json:"healthy_backends"`
	TotalBackends   int `json:"total_backends"`
	// Frontends is the detail, sorted by name.
	Frontends []FrontendStatus `json:"frontends"`
	// Reason is one line for /healthz and logs, e.g.
	// "1 of 2 frontends healthy | api: listener up, 3 of 3 backends healthy, need 1 | konnectivity: listener down".
	Reason string `json:"reason"`
}

// Equal reports whether s and o are the same status, frontend detail included.
func (s NodeStatus) Equal(o NodeStatus) bool {
	return s.Healthy == o.Healthy && s.HealthyFrontends == o.HealthyFrontends && s.TotalFrontends == o.TotalFrontends &&
		s.ListenerUp == o.ListenerUp && s.HealthyBackends == o.HealthyBackends && s.TotalBackends == o.TotalBackends &&
		s.Reason == o.Reason && slices.Equal(s.Frontends, o.Frontends)
}

// Node is this node's own health over its frontends, which can be added, replaced and removed at run time
// (reload). Each frontend is healthy when its listener is up and its Monitor has at least MinHealthy
// backends that may take connections; the node is healthy when every frontend is.
//
// Node has no goroutine and no Run: SetFrontend registers a callback with the Monitor, which calls it
// synchronously after every change, and the setters recompute directly. So Status is always current and
// subscribers are signalled exactly when the NodeStatus changes. All methods are safe for concurrent use.
type Node struct {
	metrics *Metrics

	mu   sync.Mutex // guards fes and last
	fes  map[string]*nodeFrontend
	last NodeStatus // last status subscribers were told about

	changed notify.Signal
}

// nodeFrontend is one frontend as Node follows it.
type nodeFrontend struct {
	m          *Monitor
	listenerUp bool
	unhook     func() // stops following m
}

// NodeOption configures a Node.
type NodeOption func(*Node)

// WithMetrics makes the Node publish vipd_node_healthy and vipd_frontend_healthy{frontend} on m (the
// agent's Metrics from NewMetrics, or any view of it).
func WithMetrics(m *Metrics) NodeOption { return func(n *Node) { n.metrics = m } }

// NewNode returns the health of a node with no frontend yet (not healthy: nothing to serve). Add frontends
// with SetFrontend. A witness has none.
func NewNode(opts ...NodeOption) *Node {
	n := &Node{fes: make(map[string]*nodeFrontend)}
	for _, o := range opts {
		o(n)
	}
	n.last = n.computeLocked()
	n.metrics.setNode(n.last)
	return n
}

// SetFrontend makes the Node follow frontend name, whose backends m (non-nil) checks. For a new name the
// listener starts down (call SetListenerUp once it listens); for a name already set, m replaces its Monitor
// and the listener state is kept.
func (n *Node) SetFrontend(name string, m *Monitor) {
	n.mu.Lock()
	fe, ok := n.fes[name]
	if ok && fe.m == m {
		n.mu.Unlock()
		return
	}
	if !ok {
		fe = &nodeFrontend{}
		n.fes[name] = fe
	} else {
		fe.unhook()
	}
	fe.m = m
	fe.unhook = m.onChange(n.recompute)
	n.mu.Unlock()
	n.recompute()
}

// RemoveFrontend stops following frontend name (a no-op for an unknown name) and deletes its metric series.
func (n *Node) RemoveFrontend(name string) {
	n.mu.Lock()
	fe, ok := n.fes[name]
	if ok {
		fe.unhook()
		delete(n.fes, name)
		n.metrics.deleteFrontend(name)
	}
	n.mu.Unlock()
	if ok {
		n.recompute()
	}
}

// SetListenerUp records whether frontend name's listener is accepting. An unknown name is ignored: set the
// frontend first.
func (n *Node) SetListenerUp(name string, up bool) {
	n.mu.Lock()
	fe, ok := n.fes[name]
	if ok {
		fe.listenerUp = up
	}
	n.mu.Unlock()
	if ok {
		n.recompute()
	}
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
func (n *Node) Subscribe() (<-chan struct{}, func()) { return n.changed.Subscribe() }

// recompute signals subscribers if the status differs from the last one
// they were told about. It reads the Monitors' latest snapshots, so when
// changes race, the last call to run still sees the final state.
func (n *Node) recompute() {
	n.mu.Lock()
	s := n.computeLocked()
	if s.Equal(n.last) {
		n.mu.Unlock()
		return
	}
	n.last = s
	n.metrics.setNode(s) // under mu, so the gauges follow the order of the changes
	n.mu.Unlock()
	n.changed.Notify()
}

// computeLocked derives the status from the listener flags and the Monitors' snapshots. n.mu must be held.
func (n *Node) computeLocked() NodeStatus {
	s := NodeStatus{TotalFrontends: len(n.fes), ListenerUp: len(n.fes) > 0, Frontends: make([]FrontendStatus, 0, len(n.fes))}
	for name, fe := range n.fes {
		f := frontendStatus(name, fe.listenerUp, fe.m.summary())
		s.Frontends = append(s.Frontends, f)
		if f.Healthy {
			s.HealthyFrontends++
		}
		s.ListenerUp = s.ListenerUp && f.ListenerUp
		s.HealthyBackends += f.HealthyBackends
		s.TotalBackends += f.TotalBackends
	}
	slices.SortFunc(s.Frontends, func(a, b FrontendStatus) int { return strings.Compare(a.Name, b.Name) })
	s.Healthy = s.TotalFrontends > 0 && s.HealthyFrontends == s.TotalFrontends
	if s.TotalFrontends == 0 {
		s.Reason = "no frontend: nothing to serve"
		return s
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d frontends healthy", s.HealthyFrontends, s.TotalFrontends)
	for _, f := range s.Frontends {
		fmt.Fprintf(&b, " | %s: %s", f.Name, f.Reason)
	}
	s.Reason = b.String()
	return s
}

// frontendStatus is one frontend's health from its listener flag and its Monitor's view.
func frontendStatus(name string, listenerUp bool, v view) FrontendStatus {
	f := FrontendStatus{
		Name:            name,
		ListenerUp:      listenerUp,
		HealthyBackends: v.serving,
		TotalBackends:   v.total,
		DrainedBackends: v.drained,
		MinHealthy:      v.minHealthy,
	}
	enough := f.HealthyBackends >= f.MinHealthy
	f.Healthy = f.ListenerUp && enough
	backends := fmt.Sprintf("%d of %d backends healthy, need %d", f.HealthyBackends, f.TotalBackends, f.MinHealthy)
	if f.DrainedBackends > 0 {
		backends = fmt.Sprintf("%d of %d backends healthy and not drained (%d drained), need %d",
			f.HealthyBackends, f.TotalBackends, f.DrainedBackends, f.MinHealthy)
	}
	switch {
	case f.Healthy:
		f.Reason = "listener up, " + backends
	case !f.ListenerUp && !enough:
		f.Reason = "listener down; " + backends
	case !f.ListenerUp:
		f.Reason = "listener down"
	default:
		f.Reason = backends
	}
	return f
}
