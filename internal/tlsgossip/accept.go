package tlsgossip

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// The first byte a dialler sends after the handshake, and the acceptor's answer.
const (
	modePacket byte = 'p'
	modeStream byte = 's'
	ackOK      byte = 'k'
)

// idleRead closes an accepted packet connection whose peer sent nothing this long (its writer closes a
// connection after a minute without packets; this catches peers that vanished without a FIN).
const idleRead = 2 * destIdle

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.ln.AcceptTCP()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does, and keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Error("gossip: accept failed", "err", err, "retry_in", delay)
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		t.admit(c)
	}
}

// admit starts the handshake of an accepted connection in its own goroutine, within the handshake limits:
// a source IP with maxHandshakesPerIP handshakes pending gets no more; when maxHandshakes are pending in all,
// the oldest is closed to make room. A peer's handshake takes milliseconds, so strangers that connect and
// stay silent (from any number of addresses) are the ones evicted, and cannot crowd peers out unless they
// open maxHandshakes connections within one peer's handshake.
func (t *Transport) admit(c *net.TCPConn) {
	remote := c.RemoteAddr().String()
	ip := hostOf(remote)
	if !t.allow(remote) {
		c.Close()
		t.stats.refused.Add(1)
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return
	}
	if n := t.perIP[ip]; n >= maxHandshakesPerIP {
		t.mu.Unlock()
		t.refused(remote, fmt.Errorf("%d connections from this IP already in their TLS handshake", n))
		c.Close()
		return
	}
	var evict *pendingConn
	if len(t.pending) >= maxHandshakes {
		for _, p := range t.pending {
			if evict == nil || p.since.Before(evict.since) {
				evict = p
			}
		}
		delete(t.pending, evict.raw) // its serve goroutine ends at once and releases the rest
	}
	p := &pendingConn{raw: c, ip: ip, since: time.Now()}
	t.pending[c] = p
	t.perIP[ip]++
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	if evict != nil {
		t.refused(evict.raw.RemoteAddr().String(), fmt.Errorf("TLS handshake not done after %v, evicted for a new connection (%d pending)",
			time.Since(evict.since).Round(time.Millisecond), maxHandshakes))
		evict.raw.Close()
	}
	go t.serve(p, remote)
}

// pendingConn is an accepted connection in its handshake.
type pendingConn struct {
	raw   *net.TCPConn
	ip    string
	since time.Time
}

// serve handshakes an accepted connection, then reads packets from it or hands it to memberlist as a stream.
func (t *Transport) serve(p *pendingConn, remote string) {
	defer t.wg.Done()
	raw, ip := p.raw, p.ip
	tc, mode, err := t.handshakeAccepted(raw)
	t.mu.Lock()
	_, stillPending := t.pending[raw] // false if evicted
	delete(t.pending, raw)
	if t.perIP[ip]--; t.perIP[ip] <= 0 {
		delete(t.perIP, ip)
	}
	t.mu.Unlock()
	if err == nil && !stillPending {
		err = errors.New("evicted") // lost the race with the eviction's Close; admit logged it
	}
	if err != nil {
		if t.ctx.Err() == nil && stillPending {
			t.refused(remote, err)
		}
		t.closeConn(raw)
		return
	}
	t.peerSeen(ip)
	switch mode {
	case modeStream:
		s := &streamConn{Conn: tc, t: t, raw: raw}
		select {
		case t.streamCh <- s:
		case <-t.ctx.Done():
			s.Close()
		}
	case modePacket:
		t.readPackets(tc, raw)
	}
}

// handshakeAccepted runs the TLS handshake under the handshake timeout, checks the protocol, reads the mode
// byte and acknowledges it. Only then has the peer proven itself; nothing else was read.
func (t *Transport) handshakeAccepted(raw *net.TCPConn) (*tls.Conn, byte, error) {
	deadline := time.Now().Add(t.hsTimeout)
	raw.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(t.ctx, deadline)
	defer cancel()
	tc := tls.Server(raw, t.server)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, 0, fmt.Errorf("TLS handshake: %w", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		return nil, 0, fmt.Errorf("peer speaks %q, not %q (is it pointed at the gossip port?)", p, ALPN)
	}
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); errors.Is(err, io.EOF) {
		return nil, 0, errors.New("peer hung up after the TLS handshake (did it refuse this node's certificate or name?)")
	} else if err != nil {
		return nil, 0, fmt.Errorf("read connection mode: %w", err)
	}
	if b[0] != modePacket && b[0] != modeStream {
		return nil, 0, fmt.Errorf("unknown connection mode %#x", b[0])
	}
	if _, err := tc.Write([]byte{ackOK}); err != nil {
		return nil, 0, fmt.Errorf("acknowledge connection: %w", err)
	}
	raw.SetDeadline(time.Time{})
	return tc, b[0], nil
}

// readPackets reads frames from an accepted packet connection until it fails, closes, idles or reaches
// MaxConnAge (the peer then redials, and its certificate is checked again against the current CA).
func (t *Transport) readPackets(tc *tls.Conn, raw *net.TCPConn) {
	defer t.closeConn(raw)
	from := raw.RemoteAddr()
	fromStr := from.String()
	end := time.Now().Add(t.maxAge)
	var hdr [4]byte
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		deadline := now.Add(idleRead)
		if end.Before(deadline) {
			deadline = end
		}
		raw.SetReadDeadline(deadline)
		buf, ts, err := readFrame(tc, &hdr)
		if errors.Is(err, errBadFrame) {
			t.refused(fromStr, err)
		}
		if err != nil {
			return
		}
		if !t.allow(fromStr) {
			continue
		}
		t.stats.received.Add(1)
		select {
		case t.packetCh <- &memberlist.Packet{Buf: buf, From: from, Timestamp: ts}:
		case <-t.ctx.Done():
			return
		}
	}
}

// errBadFrame is a frame whose length is out of bounds; the connection is closed.
var errBadFrame = errors.New("bad packet frame")

// readFrame reads one length-prefixed packet (see the package comment) from r, using hdr as scratch, and
// returns it with the time its header was read. The frame is written in one TLS record (up to 16 KiB), so the
// header arrives with the payload: that time is as close to the receipt as a stream allows, and memberlist
// measures round trips with it.
func readFrame(r io.Reader, hdr *[4]byte) ([]byte, time.Time, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, time.Time{}, err
	}
	ts := time.Now()
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxPacketSize {
		return nil, ts, fmt.Errorf("%w: %d bytes (want 1 to %d)", errBadFrame, n, MaxPacketSize)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, ts, err
	}
	return buf, ts, nil
}

// refused counts and logs (once per IP per minute) a connection refused. A peer that hung up during the
// handshake (a port scan, or a peer whose own deadline passed) learned nothing and is logged at debug level.
func (t *Transport) refused(remote string, err error) {
	t.stats.refused.Add(1)
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		t.log.Debug("gossip: peer hung up during the TLS handshake", "peer", remote, "err", err)
		return
	}
	if ok, suppressed := t.refusals.allow("in "+hostOf(remote), time.Now()); ok {
		t.log.Warn("gossip: refused connection from peer", "peer", remote, "err", err, "suppressed", suppressed)
	}
}

// streamConn is a stream connection: a *tls.Conn (ConnectionState is available) that the Transport closes at
// Shutdown unless memberlist closed it before.
type streamConn struct {
	*tls.Conn
	t   *Transport
	raw net.Conn
}

// Close closes the stream and forgets it.
func (s *streamConn) Close() error {
	s.t.mu.Lock()
	if s.t.conns != nil {
		delete(s.t.conns, s.raw)
	}
	s.t.mu.Unlock()
	return s.Conn.Close()
}
