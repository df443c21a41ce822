package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/localerr"
	"github.com/vipd/vipd/internal/notify"
)

// Backends is the proxy's view of the upstream pool. *health.Monitor satisfies it.
type Backends interface {
	// Healthy returns the addresses to balance over, in a stable order. It is called once per accepted
	// connection, so it must be cheap and safe for concurrent use; the proxy never modifies the slice.
	Healthy() []string
	// ReportDialFailure tells the health source a connect to addr failed (a passive check). It is called
	// from connection goroutines, concurrently, and must not block.
	ReportDialFailure(addr string, err error)
}

var (
	// errNoHealthy: Backends.Healthy returned nothing.
	errNoHealthy = errors.New("no healthy backend")
	// errAllDialsFailed: every attempt allowed for this connection failed.
	errAllDialsFailed = errors.New("every dial attempt failed")
)

const (
	// pipeSize is the capacity of splice pipes: bytes moved per splice pair on a busy connection. The kernel
	// default (64 KiB) measured faster than 256 KiB or 1 MiB pipes (4 loopback streams on one core: 11.0 vs
	// 10.8 vs 10.4 Gbit/s), presumably because the pages stay cache-hot, and needs no F_SETPIPE_SZ call.
	pipeSize = 64 << 10
	// keepPipes bounds the free list: idle pipes kept for reuse (2 fds each).
	keepPipes = 32
)

// Proxy is an L4 TCP proxy over a dynamic set of healthy backends. Create it with New and run it with
// Serve; its methods are safe for concurrent use. Its configuration can change while it serves (SetConfig),
// and the connections of a backend removed by a reload can be closed after a grace period (CloseBackend).
type Proxy struct {
	log      *slog.Logger
	metrics  *Metrics
	set      atomic.Pointer[settings] // the configuration in force
	backends Backends
	bal      balancer
	table    *table
	pipes    *pipePool
	chunk    int // bytes asked per splice into a pipe
	conns    sync.Pool

	open             atomic.Int64 // connections accepted and not yet released or refused
	outage           atomic.Bool  // "no healthy backend" was logged and no dial succeeded since
	refusedNoBackend atomic.Uint64
	refusedMaxConns  atomic.Uint64
	refusedLocal     atomic.Uint64
	serving          atomic.Int32

	acceptLog, dialLog, loopLog *localerr.RateLog                // at most one line a minute each
	configChanged               notify.Signal                    // SetConfig ran: idle sweepers re-read IdleTimeout
	listens                     atomic.Pointer[[]netip.AddrPort] // listening addresses of running Serve calls (loop guard)

	mu      sync.Mutex // guards servers and writes of listens
	servers map[*server]struct{}

	hooks testHooks // nil funcs outside tests
}

// testHooks let tests reach into a race window or see the sockets of a proxied connection. Set before Serve.
type testHooks struct {
	// parked runs in a downstream pump after it published the direction as parked and before it armed the
	// backend socket: the window in which a closer may claim the direction and release the conn.
	parked func(c *conn)
	// connected runs once a proxied connection's client and backend sockets are tuned, before the pumps start.
	connected func(client, backend socket)
}

// New validates cfg and returns a Proxy balancing over b. It starts nothing.
func New(cfg Config, b Backends) (*Proxy, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: Backends is nil", ErrInvalidConfig)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Proxy{
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		backends:  b,
		table:     newTable(cfg.Metrics),
		pipes:     newPipePool(keepPipes, 0), // 0: keep the kernel's default size, pipeSize
		chunk:     pipeSize,
		acceptLog: &localerr.RateLog{Interval: localerr.LogInterval},
		dialLog:   &localerr.RateLog{Interval: localerr.LogInterval},
		loopLog:   &localerr.RateLog{Interval: localerr.LogInterval},
		servers:   make(map[*server]struct{}),
	}
	p.set.Store(p.newSettings(cfg))
	p.listens.Store(&[]netip.AddrPort{})
	p.conns.New = func() any { return newConn() }
	return p, nil
}

// Stats returns the counters of every backend this proxy has dialed, sorted by address. A backend passed to
// CloseBackend is no longer listed.
func (p *Proxy) Stats() []BackendStats { return p.table.stats() }

// Counters returns proxy-wide counters.
func (p *Proxy) Counters() Counters {
	return Counters{
		Active:           p.open.Load(),
		RefusedNoBackend: p.refusedNoBackend.Load(),
		RefusedMaxConns:  p.refusedMaxConns.Load(),
		RefusedLocal:     p.refusedLocal.Load(),
	}
}

// dial connects to a healthy backend, retrying on the next ones after a failure. The chosen backend's
// active count is already incremented on success. A failure for a local reason (errLocal) ends the
// attempts at once and blames no backend; a backend that is this proxy itself (errLoop) is skipped without
// blame.
func (p *Proxy) dial(ctx context.Context, set *settings) (socket, *backend, error) {
	addrs := p.backends.Healthy()
	if len(addrs) == 0 {
		return nil, nil, errNoHealthy
	}
	attempts := 1 + set.retries(len(addrs))
	var triedBuf [8]int
	tried := triedBuf[:0]
	var lastErr error
	for range attempts {
		i := p.bal.pick(set.Balance, addrs, tried, p.table)
		if i < 0 {
			break
		}
		tried = append(tried, i)
		be := p.table.get(addrs[i])
		be.activeN.Add(1) // count it before dialing so concurrent LeastConn picks see it
		var start time.Time
		if be.m.dialDuration != nil {
			start = time.Now()
		}
		c, err := p.connect(ctx, set, be)
		if err == nil {
			if be.m.dialDuration != nil {
				observe(be.m.dialDuration, time.Since(start))
			}
			be.total.Add(1)
			inc(be.m.conns)
			gaugeAdd(be.m.active, 1)
			return c, be, nil
		}
		be.activeN.Add(-1)
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("dial %s: %w", be.addr, ctx.Err())
		}
		if errno, ok := localerr.Errno(err); ok {
			p.localError(opDial, errno, err, "backend", be.addr)
			return nil, nil, fmt.Errorf("%w: %w", errLocal, err)
		}
		if errors.Is(err, errLoop) {
			p.loopRefused(be, err)
			lastErr = err
			continue
		}
		be.dialErrors.Add(1)
		inc(be.m.dialErrors)
		p.backends.ReportDialFailure(be.addr, err)
		p.log.Debug("dial backend failed", "backend", be.addr, "attempt", len(tried), "err", err)
		lastErr = err
	}
	return nil, nil, fmt.Errorf("%w (%d tried): %w", errAllDialsFailed, len(tried), lastErr)
}

// connect opens one connection to be: raw for an IP literal, through the settings' net.Dialer for a name.
// Either way the loop guard runs first, and after the connect when only the socket's address can tell.
func (p *Proxy) connect(ctx context.Context, set *settings, be *backend) (socket, error) {
	if be.hasSA {
		verdict, err := p.checkLoopBefore(be)
		if err != nil {
			return nil, err
		}
		var local netip.AddrPort
		var wantLocal *netip.AddrPort
		if verdict == checkAfter {
			wantLocal = &local
		}
		f, err := connectRaw(ctx, &be.sa, set.KeepAlive, set.DialTimeout, wantLocal)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", be.addr, err)
		}
		if verdict == checkAfter {
			if err := p.checkLoopAfter(be, local, be.ap); err != nil {
				reset(f)
				return nil, err
			}
		}
		return f, nil
	}
	c, err := set.dialer.DialContext(ctx, "tcp", be.addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	if dst, ok := addrPortOf(tc.RemoteAddr()); ok {
		if v, _ := p.loopBefore(dst); v == checkAfter {
			local, _ := addrPortOf(tc.LocalAddr()) // cached by net: no syscall
			if err := p.checkLoopAfter(be, local, dst); err != nil {
				reset(tc)
				return nil, err
			}
		}
	}
	return tc, nil
}

// noBackend refuses client after dial found no backend, logging once per outage.
func (p *Proxy) noBackend(client socket, err error) {
	p.refusedNoBackend.Add(1)
	p.metrics.refusedInc(reasonNoBackend)
	if !p.outage.Swap(true) {
		p.log.Warn("no healthy backend: resetting new connections until one is reachable", "err", err)
	}
	p.log.Debug("connection refused", "client", peer{client}, "err", err)
	reset(client)
}

// refuseLocal refuses client at once (RST) after a dial failed for a local reason (counted and logged by
// dial).
func (p *Proxy) refuseLocal(client socket, err error) {
	p.refusedLocal.Add(1)
	p.metrics.refusedInc(reasonLocalError)
	p.log.Debug("connection refused: local resource error", "client", peer{client}, "err", err)
	reset(client)
}

// backendReachable ends an outage after a successful dial.
func (p *Proxy) backendReachable(be *backend) {
	if p.outage.Load() && p.outage.Swap(false) {
		p.log.Info("backend reachable again: accepting connections", "backend", be.addr)
	}
}

// tuneAccepted sets on an accepted socket what it did not inherit from the listener: the configured
// keepalive (a Listen listener passes it on) and TCP_NODELAY (net.TCPListener.Accept sets it; a raw accept
// from a listener not made by Listen does not). Small replies must not wait for an ACK (Nagle).
func (p *Proxy) tuneAccepted(c socket, keepAlive time.Duration, wantKeepAlive, noDelay bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if wantKeepAlive {
			_ = setKeepAlive(int(fd), keepAlive)
		}
		if noDelay {
			_ = rawSetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
	})
}

// reset closes c with an RST, so the client learns at once that nobody will serve it (no FIN, no hang).
func reset(c socket) {
	setLinger0(c)
	_ = c.Close()
}
