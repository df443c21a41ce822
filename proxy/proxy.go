package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

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
	chunk    int       // bytes asked per splice into a pipe
	conns    sync.Pool // *conn, shared by the reactors

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

// testHooks let tests see the sockets of a proxied connection. Set before Serve.
type testHooks struct {
	// connected runs on the reactor once a proxied connection's client and backend sockets are tuned, before
	// bytes move.
	connected func(client, backend int)
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

// backendReachable ends an outage after a successful dial.
func (p *Proxy) backendReachable(be *backend) {
	if p.outage.Load() && p.outage.Swap(false) {
		p.log.Info("backend reachable again: accepting connections", "backend", be.addr)
	}
}
