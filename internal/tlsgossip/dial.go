package tlsgossip

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vipd/vipd/internal/pki"
)

// DialTimeout opens a stream to addr. See memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a.Addr within timeout: TCP, TLS handshake, and the peer's
// acknowledgement of this node. When a.Name is set, the peer's certificate must name that node
// (ErrWrongPeer). See memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	tc, raw, err := t.dial(a, modeStream, timeout)
	if err != nil {
		return nil, err
	}
	return &streamConn{Conn: tc, t: t, raw: raw}, nil
}

// dial connects to a peer in mode: TCP from the bind address, the TLS handshake, the protocol and name
// checks, the mode byte and the peer's acknowledgement, all within timeout (and cut short by Shutdown). The
// raw connection is tracked; the caller closes it with closeConn (or the streamConn's Close).
func (t *Transport) dial(a memberlist.Address, mode byte, timeout time.Duration) (*tls.Conn, net.Conn, error) {
	if !t.allow(a.Addr) {
		return nil, nil, fmt.Errorf("dial %s: %w", a.Addr, ErrBlocked)
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	var d net.Dialer
	if t.local != nil { // a nil *TCPAddr in the interface would not be a nil LocalAddr
		d.LocalAddr = t.local
	}
	raw, err := d.DialContext(ctx, "tcp", a.Addr)
	if err != nil {
		if t.ctx.Err() != nil {
			return nil, nil, ErrClosed
		}
		return nil, nil, fmt.Errorf("dial %s: %w", a.Addr, err)
	}
	if !t.track(raw) {
		raw.Close()
		return nil, nil, ErrClosed
	}
	tc, err := t.handshakeDialled(ctx, raw, a, mode)
	if err != nil {
		t.closeConn(raw)
		if t.ctx.Err() != nil {
			return nil, nil, ErrClosed
		}
		if ok, suppressed := t.refusals.allow("out "+hostOf(a.Addr), time.Now()); ok {
			t.log.Warn("gossip: could not connect to peer", "peer", a.String(), "err", err, "suppressed", suppressed)
		}
		return nil, nil, fmt.Errorf("gossip connection to %s: %w", a.String(), err)
	}
	t.stats.dials.Add(1)
	return tc, raw, nil
}

func (t *Transport) handshakeDialled(ctx context.Context, raw net.Conn, a memberlist.Address, mode byte) (*tls.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	tc := tls.Client(raw, t.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		return nil, fmt.Errorf("peer speaks %q, not %q (is it the gossip port?)", cs.NegotiatedProtocol, ALPN)
	}
	if names := pki.PeerNames(cs); a.Name != "" && !pki.HasName(names, a.Name) {
		return nil, fmt.Errorf("%w: its certificate names %q, not %q", ErrWrongPeer, names, a.Name)
	}
	if _, err := tc.Write([]byte{mode}); err != nil {
		return nil, fmt.Errorf("send connection mode: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		// A TLS 1.3 server reports that it refused our certificate here, at the first read.
		return nil, fmt.Errorf("peer did not accept the connection: %w", err)
	}
	if b[0] != ackOK {
		return nil, fmt.Errorf("peer answered %#x, not %#x", b[0], ackOK)
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}
