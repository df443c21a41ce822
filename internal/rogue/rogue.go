// Package rogue is a small attacker toolkit for vipd's tests: a stranger on the network that speaks raft's
// own wire protocol (hashicorp/raft's NetworkTransport) to a node's Raft port, optionally over TLS with a
// wrong or foreign certificate or with a wrong cluster key, and a foreign memberlist node that tries to
// join gossip claiming to be healthy, high-priority and holding Raft state.
//
// Every function reports what the target revealed (a response's term, last log index, whether it granted
// or applied the request) or the error, so a test can assert that a secured node revealed and changed
// nothing, and that an insecure one did (the attacks work, so the tests can fail). It is imported by
// _test.go files only, and it never imports vipd's own packages: it attacks from the outside.
package rogue

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Dialer is how the attacker reaches a Raft port.
type Dialer struct {
	// Source, if set, is the local IP to dial from.
	Source net.IP
	// Timeout bounds the dial, the handshake and each RPC; 0 = 2 s.
	Timeout time.Duration
	// Handshake, if set, runs on each new connection before raft's bytes (TLS, a key proof, ...); nil
	// speaks plain TCP, as raft's own transport does.
	Handshake func(net.Conn) (net.Conn, error)
}

func (d Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return 2 * time.Second
}

// TLSHandshake returns a Handshake that wraps the connection in a TLS client with cfg (for example a
// certificate from a foreign CA, no certificate, or InsecureSkipVerify).
func TLSHandshake(cfg *tls.Config) func(net.Conn) (net.Conn, error) {
	return func(c net.Conn) (net.Conn, error) {
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("rogue TLS handshake: %w", err)
		}
		return tc, nil
	}
}

// streamLayer dials for raft's NetworkTransport; it never accepts.
type streamLayer struct {
	d         Dialer
	closeOnce sync.Once
	closed    chan struct{}
}

func (s *streamLayer) Accept() (net.Conn, error) {
	<-s.closed
	return nil, net.ErrClosed
}

func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

func (s *streamLayer) Addr() net.Addr {
	return &net.TCPAddr{IP: s.d.Source}
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout}
	if s.d.Source != nil {
		nd.LocalAddr = &net.TCPAddr{IP: s.d.Source}
	}
	c, err := nd.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if s.d.Handshake == nil {
		return c, nil
	}
	c.SetDeadline(time.Now().Add(timeout))
	hc, err := s.d.Handshake(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return hc, nil
}

// transport is a one-shot raft NetworkTransport over d; the caller closes it.
func (d Dialer) transport() *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{d: d, closed: make(chan struct{})},
		MaxPool: 1,
		Timeout: d.timeout(),
		Logger:  quietLogger(),
	})
}
