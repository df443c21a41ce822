package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
)

// The Raft connection handshake (see the package comment for why it is sound).
//
// Every Raft connection starts with TLS 1.3. With a cluster key, the TLS certificates are throw-away ones
// nobody verifies, and the key proves itself over the TLS connection: the client sends a hello carrying its
// node name and, for each key it holds, the key's fingerprint and
//
//	HMAC-SHA256(authKey(key), EKM || role || name)
//
// where EKM is 32 bytes of the connection's exported keying material (RFC 8446 §7.5, label proofLabel),
// role is 'C' for the client and 'S' for the server, and authKey derives a key used for nothing else. The
// server answers with its own hello only if one of the client's proofs verified with a key it holds; it
// closes the connection otherwise. With certificates (mTLS), both sides are verified by the CA during the TLS
// handshake and the certificate names the node; with certificates and a key, both checks run and the name
// proven with the key must be one the certificate names.
const (
	proofLabel   = "EXPERIMENTAL-vipd-raft-key-proof-v1"
	authKeyLabel = "vipd raft auth key v1"
	helloMagic   = "VPD1"
	ekmLen       = 32
	macLen       = sha256.Size
	fpLen        = 4
	proofLen     = fpLen + macLen
	roleClient   = 'C'
	roleServer   = 'S'
)

// errWrongKey: none of the peer's proofs verified with a key this node holds.
var errWrongKey = errors.New("no proof verifies with a key this node holds")

// authError is a refused handshake: reason is the short class an operator acts on (wrong key, foreign
// CA, ...), err the detail.
type authError struct {
	reason string
	err    error
}

func (e *authError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

func refuse(reason string, err error) error { return &authError{reason: reason, err: err} }

// refusalReason is the short class of a handshake error, for logs and counters.
func refusalReason(err error) string {
	var ae *authError
	if errors.As(err, &ae) {
		return ae.reason
	}
	return "handshake failed"
}

// proof is one key's proof in a hello.
type proof struct {
	fp  [fpLen]byte
	mac [macLen]byte
}

// hello is one side's key proof message:
//
//	"VPD1" | len(name) u8 | name | n u8 | n × (fingerprint [4] | mac [32])
type hello struct {
	name   string
	proofs []proof
}

func (h hello) marshal() []byte {
	b := make([]byte, 0, len(helloMagic)+2+len(h.name)+len(h.proofs)*proofLen)
	b = append(b, helloMagic...)
	b = append(b, byte(len(h.name)))
	b = append(b, h.name...)
	b = append(b, byte(len(h.proofs)))
	for _, p := range h.proofs {
		b = append(b, p.fp[:]...)
		b = append(b, p.mac[:]...)
	}
	return b
}

// readHello reads exactly one hello from r, never more than its declared, bounded size.
func readHello(r io.Reader) (hello, error) {
	var hdr [len(helloMagic) + 1]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return hello{}, err
	}
	if string(hdr[:len(helloMagic)]) != helloMagic {
		return hello{}, fmt.Errorf("bad magic %q", hdr[:len(helloMagic)])
	}
	n := int(hdr[len(helloMagic)])
	if n == 0 || n > maxNodeName {
		return hello{}, fmt.Errorf("name length %d out of range 1-%d", n, maxNodeName)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return hello{}, err
	}
	h := hello{name: string(buf[:n])}
	if !ValidNodeName(h.name) {
		return hello{}, fmt.Errorf("invalid node name %q", h.name)
	}
	count := int(buf[n])
	if count == 0 || count > maxKeys {
		return hello{}, fmt.Errorf("%d proofs, want 1-%d", count, maxKeys)
	}
	raw := make([]byte, count*proofLen)
	if _, err := io.ReadFull(r, raw); err != nil {
		return hello{}, err
	}
	for i := range count {
		var p proof
		copy(p.fp[:], raw[i*proofLen:])
		copy(p.mac[:], raw[i*proofLen+fpLen:])
		h.proofs = append(h.proofs, p)
	}
	return h, nil
}

// authKey derives the key that signs handshake proofs from a cluster key, so the bytes memberlist uses for
// AES-GCM never key an HMAC directly.
func authKey(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(authKeyLabel))
	return m.Sum(nil)
}

func proofMAC(key, ekm []byte, role byte, name string) [macLen]byte {
	m := hmac.New(sha256.New, authKey(key))
	m.Write(ekm)
	m.Write([]byte{role})
	m.Write([]byte(name))
	return [macLen]byte(m.Sum(nil))
}

// makeHello proves every key in keys for name on the connection whose keying material is ekm.
func makeHello(name string, keys [][]byte, ekm []byte, role byte) hello {
	h := hello{name: name}
	for _, k := range keys {
		h.proofs = append(h.proofs, proof{fp: keyFP(k), mac: proofMAC(k, ekm, role, name)})
	}
	return h
}

// verifyHello accepts h if one of its proofs verifies with one of keys for role on this connection.
func verifyHello(h hello, keys [][]byte, ekm []byte, role byte) error {
	for _, p := range h.proofs {
		for _, k := range keys {
			if keyFP(k) != p.fp {
				continue
			}
			want := proofMAC(k, ekm, role, h.name)
			if hmac.Equal(want[:], p.mac[:]) {
				return nil
			}
		}
	}
	return errWrongKey
}

// peerAuth runs the handshake of one security mode on raw connections; the caller sets their deadline.
type peerAuth struct {
	mode SecurityMode
	name string
	// keys returns the installed cluster keys; nil in modes without a key.
	keys func() [][]byte
	// serverTLS and clientTLS return the TLS configs; nil in insecure mode (plain TCP).
	serverTLS, clientTLS func() *tls.Config
	// peerNames returns the node names the verified certificate carries; nil when certificates are not
	// verified (key-only mode).
	peerNames func(tls.ConnectionState) []string
}

// client authenticates the server on a freshly dialed connection and returns the connection to use and the
// names the server proved (nil in insecure mode).
func (a *peerAuth) client(raw net.Conn) (net.Conn, []string, error) {
	if a.clientTLS == nil {
		return raw, nil, nil
	}
	tc := tls.Client(raw, a.clientTLS())
	names, ekm, err := a.handshake(tc)
	if err != nil {
		return nil, nil, err
	}
	if a.keys == nil {
		return tc, names, nil
	}
	if _, err := tc.Write(makeHello(a.name, a.keys(), ekm, roleClient).marshal()); err != nil {
		return nil, nil, refuse("no key proof", fmt.Errorf("send proof: %w", err))
	}
	h, err := readHello(tc)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, refuse("wrong key", fmt.Errorf("the peer closed the connection without proving a key: it holds none of ours (fingerprints %s)", strings.Join(fingerprints(a.keys()), ",")))
		}
		return nil, nil, refuse("malformed key proof", err)
	}
	if err := verifyHello(h, a.keys(), ekm, roleServer); err != nil {
		return nil, nil, refuse("wrong key", fmt.Errorf("server %q: %w", h.name, err))
	}
	if names != nil && !slices.Contains(names, h.name) {
		return nil, nil, refuse("name not in certificate", fmt.Errorf("key proven for %q, certificate names %v", h.name, names))
	}
	return tc, []string{h.name}, nil
}

// server authenticates the client of an accepted connection. It sends nothing of its own before the
// client's proof verified (beyond the TLS handshake's throw-away certificate in key mode).
func (a *peerAuth) server(raw net.Conn) (net.Conn, []string, error) {
	if a.serverTLS == nil {
		return raw, nil, nil
	}
	tc := tls.Server(raw, a.serverTLS())
	names, ekm, err := a.handshake(tc)
	if err != nil {
		return nil, nil, err
	}
	if a.keys == nil {
		return tc, names, nil
	}
	h, err := readHello(tc)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, refuse("no key proof", err)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, refuse("no key proof", err)
		}
		return nil, nil, refuse("malformed key proof", err)
	}
	keys := a.keys()
	if err := verifyHello(h, keys, ekm, roleClient); err != nil {
		return nil, nil, refuse("wrong key", fmt.Errorf("client claims %q: %w", h.name, err))
	}
	if names != nil && !slices.Contains(names, h.name) {
		return nil, nil, refuse("name not in certificate", fmt.Errorf("key proven for %q, certificate names %v", h.name, names))
	}
	if _, err := tc.Write(makeHello(a.name, keys, ekm, roleServer).marshal()); err != nil {
		return nil, nil, fmt.Errorf("send proof: %w", err)
	}
	return tc, []string{h.name}, nil
}

// handshake runs the TLS handshake of either side and returns the node names the peer's certificate
// carries (nil in key-only mode) and, when the key proof follows, the keying material it is bound to.
func (a *peerAuth) handshake(tc *tls.Conn) (names []string, ekm []byte, err error) {
	if err := tc.Handshake(); err != nil {
		return nil, nil, classifyTLS(err)
	}
	if names, err = a.certNames(tc.ConnectionState()); err != nil || a.keys == nil {
		return names, nil, err
	}
	ekm, err = exportEKM(tc)
	return names, ekm, err
}

func (a *peerAuth) certNames(cs tls.ConnectionState) ([]string, error) {
	if a.peerNames == nil {
		return nil, nil
	}
	var names []string
	for _, n := range a.peerNames(cs) {
		if ValidNodeName(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, refuse("certificate names no node", errors.New("the peer's certificate carries no valid node name"))
	}
	return names, nil
}

func exportEKM(tc *tls.Conn) ([]byte, error) {
	cs := tc.ConnectionState()
	if cs.Version != tls.VersionTLS13 {
		return nil, refuse("TLS handshake", fmt.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version)))
	}
	ekm, err := cs.ExportKeyingMaterial(proofLabel, nil, ekmLen)
	if err != nil {
		return nil, refuse("TLS handshake", fmt.Errorf("export keying material: %w", err))
	}
	return ekm, nil
}

// classifyTLS names what went wrong in a TLS handshake, for the refusal log.
func classifyTLS(err error) error {
	var (
		rh      tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		alert   tls.AlertError
		ne      net.Error
	)
	switch {
	case errors.As(err, &rh):
		return refuse("not TLS", fmt.Errorf("the peer speaks plain TCP (an unauthenticated client, or a node with insecure mode): %w", err))
	case errors.As(err, &unknown):
		return refuse("foreign CA", err)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return refuse("certificate expired or not yet valid", err)
	case errors.As(err, &invalid):
		return refuse("invalid certificate", err)
	case errors.As(err, &alert):
		return refuse("refused by peer", err)
	case errors.As(err, &ne) && ne.Timeout():
		return refuse("handshake timeout", err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return refuse("closed during TLS handshake", err)
	case strings.Contains(err.Error(), "certificate"):
		// crypto/tls reports a missing client certificate only as text.
		return refuse("no or bad certificate", err)
	}
	return refuse("TLS handshake", err)
}

func fingerprints(keys [][]byte) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, KeyFingerprint(k))
	}
	return out
}
