//go:build linux

package vip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket restart back-off: the first restart after a socket has served a while is immediate (a VIP
// nobody answers for is an outage); a socket that keeps failing is reopened after 10 ms, 20 ms, … up to
// once a second, so a broken interface costs a few syscalls a second, not a busy loop.
const (
	restartMinDelay   = 10 * time.Millisecond
	restartMaxDelay   = time.Second
	restartResetAfter = 10 * time.Second // a socket that served this long fails "for the first time" again
)

// restartBackoff yields the delay before each reopen of one protocol's socket.
type restartBackoff struct{ cur time.Duration }

// failed returns the delay before the next open, after a socket that served for served (0 when the open
// itself failed).
func (b *restartBackoff) failed(served time.Duration) time.Duration {
	if served >= restartResetAfter {
		b.cur = 0
	}
	d := b.cur
	b.cur = min(max(2*b.cur, restartMinDelay), restartMaxDelay)
	return d
}

// responderSocket is one protocol's open socket. serve reads until the socket is closed (nil) or fails
// (the error); close may be called concurrently with serve and unblocks it.
type responderSocket interface {
	serve() error
	close()
}

// responderProto is one protocol the responder answers, kept across socket restarts.
type responderProto struct {
	name    string // "arp" or "ndp": the metric label
	title   string // "ARP" or "NDP", for logs
	open    func(ifi *net.Interface) (responderSocket, error)
	sock    responderSocket // nil while down
	since   time.Time       // when sock was opened
	retryAt time.Time       // when to reopen, while down
	backoff restartBackoff
}

// responder runs Answer: it opens each protocol's socket in the caller's goroutine (and so in the caller's
// network namespace, which a test may have set on its locked thread), lets one goroutine per socket read
// it, and reopens a socket that fails, from the same goroutine, until ctx is done.
type responder struct {
	k      *LinuxKernel
	protos []*responderProto
	warns  *warnLimiter
}

type socketEnded struct {
	p   *responderProto
	err error
}

func (k *LinuxKernel) newResponder(ips []netip.Addr, allow func() bool) *responder {
	var v4, v6 []netip.Addr
	for _, ip := range ips {
		if ip.Is4() {
			v4 = append(v4, ip)
		} else {
			v6 = append(v6, ip)
		}
	}
	r := &responder{k: k, warns: newWarnLimiter(warnEvery, maxWarnKeys)}
	if len(v4) > 0 {
		limit := newReplyLimiter[[6]byte](k.replyPerRequester, k.replyGlobal, replyWindow)
		r.protos = append(r.protos, &responderProto{name: "arp", title: "ARP",
			open: func(ifi *net.Interface) (responderSocket, error) {
				return k.openARP(ifi, v4, allow, limit, r.warns)
			}})
	}
	if len(v6) > 0 {
		limit := newReplyLimiter[netip.Addr](k.replyPerRequester, k.replyGlobal, replyWindow)
		r.protos = append(r.protos, &responderProto{name: "ndp", title: "NDP",
			open: func(ifi *net.Interface) (responderSocket, error) {
				return k.openNDP(ifi, v6, allow, limit, r.warns)
			}})
	}
	return r
}

// run is Answer's body. It returns an error only if a socket cannot be opened at the first attempt.
func (r *responder) run(ctx context.Context) error {
	for _, p := range r.protos {
		s, err := p.open(r.k.ifi)
		if err != nil {
			r.closeAll()
			return err
		}
		p.sock, p.since = s, time.Now()
	}
	ended := make(chan socketEnded, len(r.protos)) // each protocol has at most one reader at a time
	var wg sync.WaitGroup
	defer wg.Wait()
	defer r.closeAll() // first: unblocks every reader
	start := func(p *responderProto) {
		wg.Add(1)
		go func(s responderSocket) {
			defer wg.Done()
			ended <- socketEnded{p, s.serve()}
		}(p.sock)
	}
	for _, p := range r.protos {
		start(p)
	}
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		var retryC <-chan time.Time
		if retry != nil {
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
			return nil
		case e := <-ended:
			r.socketFailed(e.p, e.err)
		case <-retryC:
			retry = nil
		}
		// Reopen every protocol that is down and due, then wait for the earliest one still down.
		var next time.Time
		for _, p := range r.protos {
			if p.sock == nil && !time.Now().Before(p.retryAt) {
				r.reopen(p, start)
			}
			if p.sock == nil && (next.IsZero() || p.retryAt.Before(next)) {
				next = p.retryAt
			}
		}
		if retry != nil {
			retry.Stop()
			retry = nil
		}
		if !next.IsZero() {
			retry = time.NewTimer(time.Until(next))
		}
	}
}

// socketFailed closes a protocol's socket after its reader returned, and schedules the reopen.
func (r *responder) socketFailed(p *responderProto, err error) {
	p.sock.close()
	p.sock = nil
	if err == nil {
		err = fmt.Errorf("%s socket on %s closed unexpectedly", p.title, r.k.ifi.Name)
	}
	now := time.Now()
	delay := p.backoff.failed(now.Sub(p.since))
	p.retryAt = now.Add(delay)
	r.k.metrics.responderRestarted(p.name)
	if ok, suppressed := r.warns.allow(warnKey{p.name + " socket error", [6]byte{}}, now); ok {
		r.k.log.Warn(p.title+" responder socket failed; reopening it", "interface", r.k.ifi.Name,
			"err", err, "retry_in", delay, "suppressed", suppressed)
	}
}

// reopen opens a protocol's socket again (re-resolving the interface by name, in case it was recreated)
// and starts its reader, or schedules the next attempt.
func (r *responder) reopen(p *responderProto, start func(*responderProto)) {
	ifi, err := net.InterfaceByName(r.k.ifi.Name)
	var s responderSocket
	if err == nil {
		s, err = p.open(ifi)
	}
	now := time.Now()
	if err != nil {
		delay := p.backoff.failed(0)
		p.retryAt = now.Add(delay)
		if ok, suppressed := r.warns.allow(warnKey{p.name + " reopen", [6]byte{}}, now); ok {
			r.k.log.Warn("cannot reopen the "+p.title+" responder socket; retrying", "interface", r.k.ifi.Name,
				"err", err, "retry_in", delay, "suppressed", suppressed)
		}
		return
	}
	p.sock, p.since = s, now
	start(p)
	if ok, suppressed := r.warns.allow(warnKey{p.name + " reopened", [6]byte{}}, now); ok {
		r.k.log.Info(p.title+" responder socket reopened", "interface", r.k.ifi.Name, "suppressed", suppressed)
	}
}

func (r *responder) closeAll() {
	for _, p := range r.protos {
		if p.sock != nil {
			p.sock.close()
		}
	}
}

// sockRcvBuf is the receive buffer each responder socket asks for: about a thousand queued frames, so
// that a reader descheduled for a few tens of milliseconds while frames keep arriving (a flood the kernel
// filter cannot tell apart, a busy host) loses none of the requests that arrived meanwhile.
const sockRcvBuf = 1 << 20

// setRcvBuf raises a socket's receive buffer to sockRcvBuf, beyond net.core.rmem_max when the process has
// CAP_NET_ADMIN. Best effort: the default buffer works, with less slack.
func setRcvBuf(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockRcvBuf) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, sockRcvBuf)
		}
	})
}

// bindToDevice makes a socket receive only what arrives on the named interface (SO_BINDTODEVICE).
func bindToDevice(rc syscall.RawConn, ifname string) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifname) }); err != nil {
		return err
	}
	return serr
}
