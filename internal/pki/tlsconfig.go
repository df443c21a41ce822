package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ServerConfig returns the configuration for accepting peers: TLS 1.3 only; this node presents the current
// certificate (GetCertificate reads Current, so a rotation applies to the next handshake); a client
// certificate is required and verified in VerifyConnection against the current CA pool (a CA rotation applies
// to new handshakes), for ExtKeyUsage ServerAuth and ClientAuth and validity at the Reloader's clock; the
// peer must carry at least one valid node name. Which name a connection must carry is the caller's check
// (PeerNames). Session tickets are off: peers keep long-lived connections, and every handshake is then a full
// one verified against the current pool.
//
// Each call returns a new *tls.Config the caller may modify (e.g. NextProtos).
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &r.Current().Cert, nil
		},
		// The chain is verified in VerifyConnection against the pool current at the handshake; ClientCAs
		// would pin the pool at the time this config was built.
		ClientAuth:             tls.RequireAnyClientCert,
		VerifyConnection:       r.verifyPeer,
		SessionTicketsDisabled: true,
	}
}

// ClientConfig returns the configuration for dialling peers: TLS 1.3 only; this node presents the current
// certificate; the server's certificate is verified in VerifyConnection against the current CA pool, for
// ServerAuth and ClientAuth and validity, and must carry at least one valid node name. No host name is
// verified (peers are dialled by IP): the caller checks the peer's identity with PeerNames.
//
// Each call returns a new *tls.Config the caller may modify.
func (r *Reloader) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &r.Current().Cert, nil
		},
		// Not insecure: the standard verification would also match a host name, which peers dialled by IP do not
		// have in their certificates; VerifyConnection verifies the chain instead, and runs for every
		// connection regardless of this flag.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   r.verifyPeer,
	}
}

// errNoPeerCert is returned by VerifyConnection when the peer sent no certificate.
var errNoPeerCert = errors.New("peer sent no certificate")

// verifyPeer verifies the peer's certificate chain against the current CA pool at the Reloader's clock.
func (r *Reloader) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errNoPeerCert
	}
	return VerifyPeer(r.Current().CAs, cs.PeerCertificates, r.clock())
}

// VerifyPeer verifies a peer's certificate chain (leaf first, as tls.ConnectionState.PeerCertificates) against
// roots at now, for ExtKeyUsage ServerAuth and ClientAuth, and requires at least one valid node name. It is
// what ServerConfig and ClientConfig do in VerifyConnection, exported for transports that verify by other
// means.
func VerifyPeer(roots *x509.CertPool, chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return errNoPeerCert
	}
	leaf := chain[0]
	if err := checkValidity(leaf, now); err != nil {
		return fmt.Errorf("peer %w", err) // "peer holds a certificate (…) that expired at …"
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if err := verifyNode(fmt.Sprintf("peer certificate (%s)", describe(leaf)), leaf, roots, inter, now); err != nil {
		return err
	}
	if len(NodeNames(leaf)) == 0 {
		return newProblem(ErrWrongNode, nil, "peer certificate (%s) names no vipd node (DNS SAN or vipd:// URI)", describe(leaf))
	}
	return nil
}
