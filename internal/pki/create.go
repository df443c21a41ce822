package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// DefaultCAName is the CA's Common Name when NewCA is given none.
const DefaultCAName = "vipd CA"

// backdate is how far before now a new certificate's NotBefore lies, so a peer whose clock is slightly behind
// accepts it at once.
const backdate = time.Minute

// NewCA creates a self-signed CA: an ECDSA P-256 key, SHA-256 signature, a random 128-bit serial, KeyUsage
// CertSign|CRLSign, BasicConstraints CA with MaxPathLen 0 (it signs node certificates only), valid from a
// minute ago for validity. An empty commonName means DefaultCAName. The key is PKCS#8 PEM ("PRIVATE KEY").
func NewCA(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, newProblem(ErrInvalidArgument, nil, "CA validity %v must be positive", validity)
	}
	if commonName == "" {
		commonName = DefaultCAName
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// NewNodeCert issues a certificate for node from the CA in caCertPEM/caKeyPEM: an ECDSA P-256 key, SHA-256,
// a random 128-bit serial, Common Name node, SANs DNS node (plus dnsNames), URI vipd://node and ips,
// KeyUsage DigitalSignature, ExtKeyUsage ServerAuth and ClientAuth, valid from a minute ago for validity.
//
// It refuses an invalid node name, empty or malformed dnsNames, a nil or unspecified IP, a validity that is not
// positive or that would end after the CA expires (renew the CA first), and a CA that is not a CA or whose key
// does not match.
func NewNodeCert(caCertPEM, caKeyPEM []byte, node string, ips []net.IP, dnsNames []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if !ValidNodeName(node) {
		return nil, nil, newProblem(ErrInvalidNode, nil, "node name %q: use 1 to 63 characters of A-Z a-z 0-9 . _ -", node)
	}
	if strings.HasPrefix(node, ".") || strings.HasSuffix(node, ".") || strings.Contains(node, "..") {
		// Go's x509 refuses to parse a URI SAN with an empty host label, so no certificate can name it.
		return nil, nil, newProblem(ErrInvalidNode, nil, "node name %q cannot be named in a certificate: give a name without leading, trailing or double dots", node)
	}
	if validity <= 0 {
		return nil, nil, newProblem(ErrInvalidArgument, nil, "certificate validity %v must be positive", validity)
	}
	dns := []string{node}
	for _, d := range dnsNames {
		if !validDNSName(d) {
			return nil, nil, newProblem(ErrInvalidArgument, nil, "DNS name %q: give a host name such as lb1.example.com", d)
		}
		if !HasName(dns, d) {
			dns = append(dns, d)
		}
	}
	for _, ip := range ips {
		if ip == nil || ip.IsUnspecified() || (ip.To4() == nil && len(ip) != net.IPv6len) {
			return nil, nil, newProblem(ErrInvalidArgument, nil, "IP address %v: give the node's own address", ip)
		}
	}
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		return nil, nil, newProblem(ErrInvalidArgument, nil,
			"certificate validity %v would end after the CA expires (%s): shorten it or create a new CA",
			validity, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(ca.NotBefore) || now.After(ca.NotAfter) {
		return nil, nil, newProblem(ErrExpired, nil, "the CA is not valid now (valid %s to %s): create a new CA",
			ca.NotBefore.UTC().Format(time.RFC3339), ca.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: node},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		URIs:                  []*url.URL{NodeURI(node)},
		IPAddresses:           append([]net.IP(nil), ips...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create node certificate: %w", err)
	}
	if _, err := x509.ParseCertificate(der); err != nil { // never hand out a certificate Load would refuse
		return nil, nil, fmt.Errorf("create node certificate: the result does not parse: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// parseCA parses a CA certificate and its key for signing.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if len(certs) != 1 {
		return nil, nil, newProblem(ErrInvalidArgument, nil, "CA certificate: the PEM holds %d certificates, want exactly one", len(certs))
	}
	ca := certs[0]
	if !ca.BasicConstraintsValid || !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, newProblem(ErrNotCA, nil, "CA certificate %q is not a CA that may sign certificates: give the CA from vipd tls ca create", ca.Subject.CommonName)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	if !keyMatches(ca, key) {
		return nil, nil, newProblem(ErrKeyMismatch, nil, "CA key is not the key of CA certificate %q: give the key created with it", ca.Subject.CommonName)
	}
	return ca, key, nil
}

func newSerial() (*big.Int, error) {
	// 128 random bits; a zero serial is not allowed, so retry in that (astronomically rare) case.
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("certificate serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// validDNSName accepts a host name: dot-separated labels of letters, digits, '-' and '_' (no leading or
// trailing '-'), at most 253 characters, optionally with a leading "*." wildcard label.
func validDNSName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
