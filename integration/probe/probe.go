// Package probe is the client side of the failover suite and the demo: it
// opens a fresh connection to an address every few milliseconds, as a
// kubelet or kubectl reconnecting to the API would, optionally sends one
// HTTPS GET / through it to learn which upstream answered, and keeps every
// result so the longest outage after a fault can be computed afterwards.
package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Sample is the result of one probe.
type Sample struct {
	Start     time.Time
	Latency   time.Duration
	Connected bool   // TCP connect succeeded within ConnectTimeout
	OK        bool   // connected and, with HTTPS, a 200 answer arrived within RequestTimeout
	Backend   string // the body of the answer (the fake apiserver's name), with HTTPS
	Err       string
}

// Config says what and how often to probe. Zero durations get the defaults
// of the failover targets: every 10 ms, 50 ms connect budget.
type Config struct {
	Addr           string        // host:port, e.g. the VIP and 6443
	Interval       time.Duration // default 10ms
	ConnectTimeout time.Duration // default 50ms
	RequestTimeout time.Duration // whole probe, with HTTPS; default 1s
	HTTPS          bool          // GET / over TLS (certificate not verified) after connecting
	MaxInFlight    int           // probes running at once; a tick is skipped beyond it; default 64
}

// Prober runs probes on a ticker and records them. Safe for concurrent use.
type Prober struct {
	cfg     Config
	mu      sync.Mutex
	samples []Sample
}

// New returns a Prober; it starts nothing until Run.
func New(cfg Config) *Prober {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 50 * time.Millisecond
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	return &Prober{cfg: cfg}
}

// Run probes every Interval until ctx is done. Probes overlap, so a probe
// stuck in its timeouts does not lower the sampling rate; Run returns when
// every probe it started has finished.
func (p *Prober) Run(ctx context.Context) {
	sem := make(chan struct{}, p.cfg.MaxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s := p.Once(ctx)
				if ctx.Err() == nil { // a probe cut short by the end of Run is not an outage
					p.record(s)
				}
			}()
		default: // too many probes hanging: skip this tick
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Prober) record(s Sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, s)
}

// Samples returns the samples started in [from, to), sorted by start time.
func (p *Prober) Samples(from, to time.Time) []Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Sample
	for _, s := range p.samples {
		if !s.Start.Before(from) && s.Start.Before(to) {
			out = append(out, s)
		}
	}
	sortByStart(out)
	return out
}

// LastOK returns the newest successful sample, if any.
func (p *Prober) LastOK() (Sample, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best Sample
	found := false
	for _, s := range p.samples {
		if s.OK && (!found || s.Start.After(best.Start)) {
			best, found = s, true
		}
	}
	return best, found
}

// OKSince reports whether a probe started at or after t succeeded.
func (p *Prober) OKSince(t time.Time) bool {
	s, ok := p.LastOK()
	return ok && !s.Start.Before(t)
}

// Settled reports whether the address answers steadily at now: a probe
// started within the last quiet succeeded and none started in that span
// failed. A caller measuring an outage waits for it, so that a success
// that slipped in before the fault took effect does not end the window
// early.
func (p *Prober) Settled(now time.Time, quiet time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok := false
	for _, s := range p.samples {
		if s.Start.Before(now.Add(-quiet)) || s.Start.After(now) {
			continue
		}
		if !s.OK {
			return false
		}
		ok = true
	}
	return ok
}

// Once runs one probe now.
func (p *Prober) Once(ctx context.Context) (s Sample) {
	s.Start = time.Now()
	defer func() { s.Latency = time.Since(s.Start) }() // s is the named result: the deferred write is returned
	d := net.Dialer{Timeout: p.cfg.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", p.cfg.Addr)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer conn.Close()
	s.Connected = true
	if !p.cfg.HTTPS {
		s.OK = true
		return s
	}
	backend, err := Get(conn, s.Start.Add(p.cfg.RequestTimeout))
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.OK, s.Backend = true, backend
	return s
}

// Get sends GET / over TLS on conn and returns the trimmed body of a 200
// answer. conn stays open for a further Get on the same TLS session only when
// the caller wraps it once with NewTLS and uses GetOn; Get is one-shot.
func Get(conn net.Conn, deadline time.Time) (string, error) {
	tc := NewTLS(conn)
	return GetOn(tc, bufio.NewReader(tc), deadline)
}

// NewTLS wraps conn in a TLS client that does not verify the certificate:
// the fake apiservers make a new self-signed one at every start.
func NewTLS(conn net.Conn) *tls.Conn {
	return tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "kubernetes"}) //nolint:gosec // test client of self-signed upstreams
}

// GetOn sends one keep-alive GET / on an established TLS connection and
// reads the answer, so a caller can check that one long-lived connection
// keeps working across a failover.
func GetOn(conn net.Conn, br *bufio.Reader, deadline time.Time) (string, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("set deadline: %w", err)
	}
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: kubernetes\r\nUser-Agent: vipd-probe\r\n\r\n"); err != nil {
		return "", fmt.Errorf("send GET /: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", fmt.Errorf("read answer to GET /: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /: status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), nil
}
