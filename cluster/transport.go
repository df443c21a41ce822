package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// errBlocked is returned when a Partition drops a dial.
var errBlocked = errors.New("blocked by partition")

// Partition drops traffic between this node and the blocked peer IPs, over the real sockets, for tests and
// fault drills (a real network cut needs root and namespaces; this runs anywhere, e.g. with every node on its
// own 127.x.y.z address). A nil *Partition blocks nothing.
//
// Give each node its own Partition (Config.Partition). A node drops its outgoing gossip and raft dials to a
// blocked IP and refuses raft connections from it, but it still receives the peer's gossip datagrams: for a
// full cut, block each side on the other (node A blocks B's IP and B blocks A's). Raft dials then use the
// bind address as source, so peers see the node's own IP.
type Partition struct{ f *netFilter }

// NewPartition returns a Partition that blocks nothing until Block.
func NewPartition() *Partition { return &Partition{f: newNetFilter()} }

// Block replaces the blocked set with ips (plain IPs, no ports) and closes established raft connections to
// them, so the cut takes effect at once rather than on the next dial.
func (p *Partition) Block(ips ...string) { p.f.set(ips) }

// Heal blocks nothing again. Peers find each other again by themselves: raft on its next RPC, gossip through
// the reconnect loop (reconnect.go), within a few seconds.
func (p *Partition) Heal() { p.f.set(nil) }

// filter returns the underlying filter; nil (blocks nothing) for a nil Partition.
func (p *Partition) filter() *netFilter {
	if p == nil {
		return nil
	}
	return p.f
}

// netFilter is Partition's mechanism: traffic to a blocked peer IP is dropped, and established raft
// connections to it are closed. A nil *netFilter blocks nothing.
type netFilter struct {
	mu      sync.Mutex
	blocked map[string]bool
	conns   map[*trackedConn]struct{}
}

func newNetFilter() *netFilter {
	return &netFilter{blocked: map[string]bool{}, conns: map[*trackedConn]struct{}{}}
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func (f *netFilter) isBlocked(addr string) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[hostOf(addr)]
}

// set replaces the blocked IPs and closes tracked connections to any of them.
func (f *netFilter) set(ips []string) {
	f.mu.Lock()
	f.blocked = map[string]bool{}
	for _, ip := range ips {
		f.blocked[ip] = true
	}
	var doomed []*trackedConn
	for c := range f.conns {
		if f.blocked[c.peer] {
			doomed = append(doomed, c)
		}
	}
	f.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

func (f *netFilter) track(c net.Conn) net.Conn {
	if f == nil {
		return c
	}
	tc := &trackedConn{Conn: c, f: f, peer: hostOf(c.RemoteAddr().String())}
	f.mu.Lock()
	f.conns[tc] = struct{}{}
	f.mu.Unlock()
	return tc
}

type trackedConn struct {
	net.Conn
	f    *netFilter
	peer string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
	})
	return c.Conn.Close()
}

// filteredTransport is a memberlist transport with the Partition filter applied to outgoing packets and
// dials. Filtering outgoing traffic on both sides of a partition is enough to cut gossip in both directions.
type filteredTransport struct {
	memberlist.NodeAwareTransport
	filter *netFilter
}

var _ memberlist.NodeAwareTransport = (*filteredTransport)(nil)

func (t *filteredTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.filter.isBlocked(addr) {
		return time.Now(), nil // a dropped datagram is not an error
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *filteredTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.filter.isBlocked(a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *filteredTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.filter.isBlocked(addr) {
		return nil, fmt.Errorf("dial %s: %w", addr, errBlocked)
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *filteredTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.filter.isBlocked(a.Addr) {
		return nil, fmt.Errorf("dial %s: %w", a.Addr, errBlocked)
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}
