package tlsgossip

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
)

// ErrInvalidConfig is the kind of every Config error (fielderr.Error).
var ErrInvalidConfig = errors.New("invalid gossip transport configuration")

const (
	// MaxPacketSize is the largest packet WriteTo accepts and a peer may send (memberlist's UDP buffer size).
	MaxPacketSize = 64 << 10
	// DefaultHandshakeTimeout bounds the TLS handshake (and the mode byte) of an accepted connection.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultTimeout bounds a packet connection's dial and each write on it.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxConnAge bounds how long a packet connection lives.
	DefaultMaxConnAge = 10 * time.Minute
	// ALPN is the application protocol both sides must negotiate.
	ALPN = "vipd-gossip/1"
)

// Config configures a Transport.
type Config struct {
	// BindAddr is the IP address to listen on (TCP only), e.g. 10.0.0.11. Empty means all addresses, which
	// needs an advertise address (memberlist's AdvertiseAddr). Outgoing connections use it as source address.
	BindAddr string
	// BindPort is the TCP port, e.g. 7946; 0 picks a free one (see Addr).
	BindPort int
	// Server and Client are the mutual-TLS configurations (pki.Reloader.ServerConfig and ClientConfig); both
	// are required. Server must require client certificates and Client must verify servers, by the standard
	// verification or VerifyConnection. The Transport uses clones with TLS 1.3 and ALPN set.
	Server, Client *tls.Config
	// Logger receives refusals and failures; nil discards.
	Logger *slog.Logger
	// Allow, if set, is asked with the peer's address (host:port; for an accepted connection its TCP remote
	// address) before every dial, for every packet sent or received, and after every accept; false drops the
	// packet or connection (tests' partition filter). It must be fast and safe for concurrent use.
	Allow func(peerAddr string) bool
	// HandshakeTimeout bounds an accepted connection's TLS handshake and mode byte; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Timeout bounds a packet connection's dial and handshake, and each write on it; 0 means DefaultTimeout
	// (memberlist's default TCPTimeout). Pass memberlist's TCPTimeout. Streams use the timeout memberlist gives.
	Timeout time.Duration
	// MaxConnAge bounds the life of a packet connection, so that a certificate or CA rotation (a revoked
	// node's CA removed from the bundle, an expired certificate) applies to every peer within it: an
	// acceptor closes a packet connection this old, a dialler replaces one at 90 % of it. Streams are
	// short-lived and not bounded. 0 means DefaultMaxConnAge.
	MaxConnAge time.Duration
}

func (c *Config) validate() error {
	if c.BindAddr != "" && net.ParseIP(c.BindAddr) == nil {
		return fielderr.New(ErrInvalidConfig, "BindAddr", "%q is not an IP address: give one of this host's addresses", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fielderr.New(ErrInvalidConfig, "BindPort", "%d is out of range: give a port from 1 to 65535", c.BindPort)
	}
	if c.Server == nil {
		return fielderr.New(ErrInvalidConfig, "Server", "is required: gossip over TLS needs this node's certificate (pki.Reloader.ServerConfig)")
	}
	if c.Server.ClientAuth != tls.RequireAnyClientCert && c.Server.ClientAuth != tls.RequireAndVerifyClientCert {
		return fielderr.New(ErrInvalidConfig, "Server", "does not require client certificates (ClientAuth %v): strangers could join gossip; use pki.Reloader.ServerConfig", c.Server.ClientAuth)
	}
	if c.Server.ClientAuth == tls.RequireAnyClientCert && c.Server.VerifyConnection == nil && c.Server.VerifyPeerCertificate == nil {
		return fielderr.New(ErrInvalidConfig, "Server", "accepts any client certificate without verifying it: use pki.Reloader.ServerConfig")
	}
	if c.Client == nil {
		return fielderr.New(ErrInvalidConfig, "Client", "is required: gossip over TLS needs this node's certificate (pki.Reloader.ClientConfig)")
	}
	if c.Client.InsecureSkipVerify && c.Client.VerifyConnection == nil && c.Client.VerifyPeerCertificate == nil {
		return fielderr.New(ErrInvalidConfig, "Client", "verifies no server certificate: use pki.Reloader.ClientConfig")
	}
	if c.HandshakeTimeout < 0 {
		return fielderr.New(ErrInvalidConfig, "HandshakeTimeout", "%v is negative: give a positive duration, or 0 for %v", c.HandshakeTimeout, DefaultHandshakeTimeout)
	}
	if c.MaxConnAge < 0 {
		return fielderr.New(ErrInvalidConfig, "MaxConnAge", "%v is negative: give a positive duration, or 0 for %v", c.MaxConnAge, DefaultMaxConnAge)
	}
	if c.Timeout < 0 {
		return fielderr.New(ErrInvalidConfig, "Timeout", "%v is negative: give a positive duration, or 0 for %v", c.Timeout, DefaultTimeout)
	}
	return nil
}
