package proxy

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// BackendStats is one backend's counters as seen by this proxy, for the admin API's /v1/backends.
type BackendStats struct {
	Addr            string
	Active          int64  // connections open now (including connects in progress)
	Total           uint64 // connections proxied since start (successful dials)
	DialErrors      uint64 // failed connect attempts
	BytesUpstream   uint64 // client to backend
	BytesDownstream uint64 // backend to client
}

// Counters are proxy-wide counters for the admin API.
type Counters struct {
	Active           int64  // connections being proxied now (all backends)
	RefusedNoBackend uint64 // reset because no backend was healthy or every dial failed
	RefusedMaxConns  uint64 // reset because MaxConns connections were open
	RefusedLocal     uint64 // reset because a dial failed for a local reason (out of fds, buffers, memory, ports)
}

// backend is the per-address state shared by all connections to it. Entries are created on first use and
// kept until CloseBackend retires them, so Stats lists every backend seen since.
type backend struct {
	addr               string
	activeN            atomic.Int64
	total, dialErrors  atomic.Uint64
	bytesUp, bytesDown atomic.Uint64
	m                  backendMetrics
	sa                 sockaddr // addr parsed once, when hasSA (an IP literal)
	hasSA              bool
	ap                 netip.AddrPort // the same, for the loop guard (valid when hasSA)
	hasAP              bool
	loopUntil          atomic.Int64 // unix nanos: found to be our own listener, refused until then
	// closing is set (under server.mu) when CloseBackend's grace ends: its connections are being closed, and
	// one that finishes dialing later is closed at once instead of tracked.
	closing atomic.Bool
}

// table maps backend addresses to their state. Lookups take a read lock; the set grows on first use and
// shrinks only by retire.
type table struct {
	metrics *Metrics
	mu      sync.RWMutex
	byAddr  map[string]*backend
}

func newTable(m *Metrics) *table {
	return &table{metrics: m, byAddr: make(map[string]*backend)}
}

// get returns addr's state, creating it on first use.
func (t *table) get(addr string) *backend {
	t.mu.RLock()
	b := t.byAddr[addr]
	t.mu.RUnlock()
	if b != nil {
		return b
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b = t.byAddr[addr]; b == nil {
		b = &backend{addr: strings.Clone(addr), m: t.metrics.forBackend(addr)}
		b.sa, b.hasSA = parseSockaddr(addr)
		if ap, err := netip.ParseAddrPort(addr); err == nil && b.hasSA {
			b.ap, b.hasAP = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
		}
		t.byAddr[b.addr] = b
	}
	return b
}

// retire removes addr's entry and returns it (nil if addr was never dialed): connections to it keep their
// pointer, and a later dial to the same address (re-added by a reload) starts a fresh entry.
func (t *table) retire(addr string) *backend {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.byAddr[addr]
	delete(t.byAddr, addr)
	return b
}

// has reports whether addr has a live entry.
func (t *table) has(addr string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byAddr[addr] != nil
}

// active implements loads for the LeastConn balancer.
func (t *table) active(addr string) int64 {
	t.mu.RLock()
	b := t.byAddr[addr]
	t.mu.RUnlock()
	if b == nil {
		return 0
	}
	return b.activeN.Load()
}

func (t *table) stats() []BackendStats {
	t.mu.RLock()
	out := make([]BackendStats, 0, len(t.byAddr))
	for _, b := range t.byAddr {
		out = append(out, BackendStats{
			Addr:            b.addr,
			Active:          b.activeN.Load(),
			Total:           b.total.Load(),
			DialErrors:      b.dialErrors.Load(),
			BytesUpstream:   b.bytesUp.Load(),
			BytesDownstream: b.bytesDown.Load(),
		})
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b BackendStats) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}
