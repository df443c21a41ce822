package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
)

// URIScheme is the scheme of a URI SAN naming a node: "vipd://lb1".
const URIScheme = "vipd"

// maxNodeName is the longest node name, a DNS label's length.
const maxNodeName = 63

// ValidNodeName reports whether s is a valid vipd node name: 1 to 63 characters of [A-Za-z0-9._-]. The set
// keeps names safe to print, to use in file names and as DNS SANs.
func ValidNodeName(s string) bool {
	if len(s) == 0 || len(s) > maxNodeName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// NodeNames returns the valid node names cert carries, in certificate order without duplicates: each DNS SAN
// that is a valid node name, then the host of each URI SAN "vipd://NAME" (no user, port, path, query or
// fragment). Other SANs are ignored. A nil cert has none.
func NodeNames(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	var names []string
	add := func(n string) {
		if !ValidNodeName(n) {
			return
		}
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	for _, d := range cert.DNSNames {
		add(d)
	}
	for _, u := range cert.URIs {
		if n, ok := uriNodeName(u); ok {
			add(n)
		}
	}
	return names
}

// uriNodeName returns N for exactly "vipd://N".
func uriNodeName(u *url.URL) (string, bool) {
	if u == nil || u.Scheme != URIScheme || u.Opaque != "" || u.User != nil || u.Port() != "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", false
	}
	return u.Host, u.Host != ""
}

// NodeURI returns the URI SAN that names node.
func NodeURI(node string) *url.URL { return &url.URL{Scheme: URIScheme, Host: node} }

// PeerNames returns the node names of the peer certificate of a completed handshake, nil before the
// handshake completed or when the peer sent no certificate.
//
// The names are trustworthy only for connections made with a Reloader's ServerConfig or ClientConfig: those
// verify the peer's chain against the CA pool in VerifyConnection (so ConnectionState.VerifiedChains stays
// empty and PeerNames reads PeerCertificates[0], which the verification covered).
func PeerNames(cs tls.ConnectionState) []string {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return NodeNames(cs.PeerCertificates[0])
}

// HasName reports whether names contains node.
func HasName(names []string, node string) bool {
	for _, n := range names {
		if n == node {
			return true
		}
	}
	return false
}
