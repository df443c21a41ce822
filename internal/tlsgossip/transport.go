package tlsgossip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	// ErrClosed is returned after Shutdown.
	ErrClosed = errors.New("gossip transport shut down")
	// ErrBlocked is returned by a dial that Config.Allow refused.
	ErrBlocked = errors.New("blocked by Allow")
	// ErrWrongPeer is returned by a dial whose peer's certificate does not name the node memberlist addressed.
	ErrWrongPeer = errors.New("peer is not the node addressed")
)

// Transport carries memberlist's packets and streams over mutual TLS on one TCP port (see the package
// comment). Create it with New; memberlist calls Shutdown.
type Transport struct {
	server, client *tls.Config
	log            *slog.Logger
	allowFn        func(string) bool
	hsTimeout      time.Duration
	timeout        time.Duration
	maxAge         time.Duration
	local          *net.TCPAddr // source address of dials; nil when bound to all addresses

	ln       *net.TCPListener
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutdown sync.Once

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{} // every open TCP connection, closed by Shutdown
	dests   map[destKey]*dest
	pending map[*net.TCPConn]*pendingConn // accepted connections in their handshake
	perIP   map[string]int                // of those, per source IP

	refusals *limiter // refused peers, logged once per IP per minute
	stats    counters
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Limits on accepted connections still in their handshake (see admit), so strangers cannot exhaust memory
// or crowd out peers; a cluster's peer has at most a packet connection and a few streams in flight.
const (
	maxHandshakes      = 64
	maxHandshakesPerIP = 8
)

// New validates cfg, listens on BindAddr:BindPort (TCP) and starts accepting connections.
func New(cfg Config) (*Transport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bindIP := net.IPv4zero
	if cfg.BindAddr != "" {
		bindIP = net.ParseIP(cfg.BindAddr)
	}
	addr := &net.TCPAddr{IP: bindIP, Port: cfg.BindPort}
	ln, err := net.ListenTCP("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gossip listen on %s (TCP): %w; is the address one of this host's, and the port free?", addr, err)
	}
	t := &Transport{
		server:    tlsClone(cfg.Server),
		client:    tlsClone(cfg.Client),
		log:       cfg.Logger,
		allowFn:   cfg.Allow,
		hsTimeout: cfg.HandshakeTimeout,
		timeout:   cfg.Timeout,
		maxAge:    cfg.MaxConnAge,
		ln:        ln,
		packetCh:  make(chan *memberlist.Packet),
		streamCh:  make(chan net.Conn),
		conns:     map[net.Conn]struct{}{},
		dests:     map[destKey]*dest{},
		pending:   map[*net.TCPConn]*pendingConn{},
		perIP:     map[string]int{},
		refusals:  newLimiter(time.Minute),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.hsTimeout == 0 {
		t.hsTimeout = DefaultHandshakeTimeout
	}
	if t.timeout == 0 {
		t.timeout = DefaultTimeout
	}
	if t.maxAge == 0 {
		t.maxAge = DefaultMaxConnAge
	}
	if !bindIP.IsUnspecified() {
		t.local = &net.TCPAddr{IP: bindIP}
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// tlsClone returns c for gossip: TLS 1.3 and the gossip ALPN.
func tlsClone(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{ALPN}
	return c
}

// Addr returns the address the Transport listens on (with the port chosen when BindPort was 0).
func (t *Transport) Addr() *net.TCPAddr { return t.ln.Addr().(*net.TCPAddr) }

// FinalAdvertiseAddr returns ip and port when ip is given (port 0 meaning the bound port); otherwise the
// bound address, which must then not be a wildcard. See memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	bound := t.Addr()
	if ip != "" {
		adv := net.ParseIP(ip)
		if adv == nil {
			return nil, 0, fmt.Errorf("advertise address %q is not an IP address", ip)
		}
		if v4 := adv.To4(); v4 != nil {
			adv = v4
		}
		if port == 0 {
			port = bound.Port
		}
		return adv, port, nil
	}
	if bound.IP.IsUnspecified() {
		return nil, 0, fmt.Errorf("gossip listens on all addresses (%s): give an advertise address peers can reach", bound)
	}
	adv := bound.IP
	if v4 := adv.To4(); v4 != nil {
		adv = v4
	}
	return adv, bound.Port, nil
}

// PacketCh returns the packets received. See memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh returns the streams accepted. See memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the listener and every connection, stops every goroutine and waits for them. It is
// idempotent and returns nil.
func (t *Transport) Shutdown() error {
	t.shutdown.Do(func() {
		t.mu.Lock()
		t.closed = true
		conns := t.conns
		t.conns = nil
		t.mu.Unlock()
		t.cancel()
		t.ln.Close()
		for c := range conns {
			c.Close()
		}
		t.wg.Wait()
	})
	return nil
}

// track registers an open connection for Shutdown; false (and c must be closed) after Shutdown.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// closeConn closes a tracked connection and forgets it.
func (t *Transport) closeConn(c net.Conn) {
	t.mu.Lock()
	if t.conns != nil {
		delete(t.conns, c)
	}
	t.mu.Unlock()
	c.Close()
}

// allow applies Config.Allow.
func (t *Transport) allow(addr string) bool { return t.allowFn == nil || t.allowFn(addr) }

// Stats are the Transport's counters since New.
type Stats struct {
	PacketsSent, PacketsReceived int64
	// Dials counts connections dialled and accepted by the peer (packet connections and streams).
	Dials int64
	// PacketsDropped counts packets not sent: queue full, destination unreachable, write failed, or Allow.
	PacketsDropped int64
	// Refused counts accepted connections refused (handshake failed or timed out, wrong protocol, over the
	// handshake limits, Allow) and frames that closed a connection (size out of bounds).
	Refused int64
}

type counters struct {
	sent, received, dropped, refused, dials atomic.Int64
}

// Stats returns the counters.
func (t *Transport) Stats() Stats {
	return Stats{
		PacketsSent:     t.stats.sent.Load(),
		PacketsReceived: t.stats.received.Load(),
		Dials:           t.stats.dials.Load(),
		PacketsDropped:  t.stats.dropped.Load(),
		Refused:         t.stats.refused.Load(),
	}
}

// hostOf returns the host of a host:port address, or addr itself.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
