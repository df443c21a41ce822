package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	before := time.Now()
	certPEM, keyPEM, err := NewCA("", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, key, err := parseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"CN defaults to " + DefaultCAName, ca.Subject.CommonName == DefaultCAName},
		{"IsCA with valid basic constraints", ca.IsCA && ca.BasicConstraintsValid},
		{"MaxPathLen 0", ca.MaxPathLen == 0 && ca.MaxPathLenZero},
		{"KeyUsage CertSign|CRLSign", ca.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign},
		{"ECDSA-SHA256", ca.SignatureAlgorithm == x509.ECDSAWithSHA256},
		{"P-256 key", isP256(ca.PublicKey)},
		{"key matches", keyMatches(ca, key)},
		{"serial positive, at most 128 bits", ca.SerialNumber.Sign() > 0 && ca.SerialNumber.BitLen() <= 128},
		{"NotBefore a minute in the past", within(ca.NotBefore, before.Add(-time.Minute), 2*time.Second)},
		{"NotAfter after validity", within(ca.NotAfter, before.Add(48*time.Hour), 2*time.Second)},
		{"self-signed", ca.CheckSignatureFrom(ca) == nil},
		{"subject key ID", len(ca.SubjectKeyId) > 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("CA: %s: not so", c.what)
		}
	}
	if _, _, err := NewCA("x", 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewCA(validity 0) = %v, want ErrInvalidArgument", err)
	}
	// Two CAs never share a serial (128 random bits).
	c2, _, _ := NewCA("", time.Hour)
	ca2, _ := parseCerts(c2)
	if ca2[0].SerialNumber.Cmp(ca.SerialNumber) == 0 {
		t.Error("two CAs have the same serial")
	}
}

func TestNewNodeCert(t *testing.T) {
	ca := newTestCA(t, "test CA")
	ips := []net.IP{net.ParseIP("10.0.0.11"), net.ParseIP("fd00::11")}
	certPEM, keyPEM, err := NewNodeCert(ca.certPEM, ca.keyPEM, "lb1", ips, []string{"lb1.example.com", "lb1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	key, err := parseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"CN is the node", c.Subject.CommonName == "lb1"},
		{"not a CA", !c.IsCA && c.BasicConstraintsValid},
		{"KeyUsage DigitalSignature", c.KeyUsage == x509.KeyUsageDigitalSignature},
		{"ExtKeyUsage ServerAuth+ClientAuth", slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})},
		{"DNS SANs node first, no duplicate", slices.Equal(c.DNSNames, []string{"lb1", "lb1.example.com"})},
		{"URI SAN vipd://lb1", len(c.URIs) == 1 && c.URIs[0].String() == "vipd://lb1"},
		{"IP SANs", len(c.IPAddresses) == 2 && c.IPAddresses[0].Equal(ips[0]) && c.IPAddresses[1].Equal(ips[1])},
		{"ECDSA-SHA256", c.SignatureAlgorithm == x509.ECDSAWithSHA256},
		{"P-256 key", isP256(c.PublicKey)},
		{"key matches", keyMatches(c, key)},
		{"signed by the CA", c.CheckSignatureFrom(ca.cert) == nil},
		{"authority key ID is the CA's", slices.Equal(c.AuthorityKeyId, ca.cert.SubjectKeyId)},
		{"serial positive, at most 128 bits", c.SerialNumber.Sign() > 0 && c.SerialNumber.BitLen() <= 128},
		{"NotBefore a minute in the past", within(c.NotBefore, time.Now().Add(-time.Minute), 2*time.Second)},
		{"names lb1 and lb1.example.com", slices.Equal(NodeNames(c), []string{"lb1", "lb1.example.com"})},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("node cert: %s: not so", ch.what)
		}
	}

	// Every other valid node name gets a certificate that Load accepts.
	for _, n := range []string{"lb_1", "-", "A.B-c_D", strings.Repeat("x", 63)} {
		c, k, err := NewNodeCert(ca.certPEM, ca.keyPEM, n, nil, nil, time.Hour)
		if err != nil {
			t.Errorf("NewNodeCert(%q): %v", n, err)
			continue
		}
		if _, err := Load(writeIdentity(t, t.TempDir(), ca.certPEM, c, k), n, time.Now()); err != nil {
			t.Errorf("Load for %q: %v", n, err)
		}
	}

	other := newTestCA(t, "other")
	nodePEM, nodeKey := ca.node(t, "lb2")
	tests := []struct {
		name       string
		caCert     []byte
		caKey      []byte
		node       string
		ips        []net.IP
		dns        []string
		validity   time.Duration
		wantErr    error
		wantInText string
	}{
		{"bad node name", ca.certPEM, ca.keyPEM, "lb 1", nil, nil, time.Hour, ErrInvalidNode, `"lb 1"`},
		{"empty node name", ca.certPEM, ca.keyPEM, "", nil, nil, time.Hour, ErrInvalidNode, "1 to 63"},
		{"node name with double dots", ca.certPEM, ca.keyPEM, "a..b", nil, nil, time.Hour, ErrInvalidNode, "double dots"},
		{"node name with a leading dot", ca.certPEM, ca.keyPEM, ".a", nil, nil, time.Hour, ErrInvalidNode, "leading"},
		{"zero validity", ca.certPEM, ca.keyPEM, "lb1", nil, nil, 0, ErrInvalidArgument, "positive"},
		{"outlives the CA", ca.certPEM, ca.keyPEM, "lb1", nil, nil, 48 * time.Hour, ErrInvalidArgument, "after the CA expires"},
		{"bad DNS name", ca.certPEM, ca.keyPEM, "lb1", nil, []string{"a..b"}, time.Hour, ErrInvalidArgument, `"a..b"`},
		{"empty DNS name", ca.certPEM, ca.keyPEM, "lb1", nil, []string{""}, time.Hour, ErrInvalidArgument, "host name"},
		{"nil IP", ca.certPEM, ca.keyPEM, "lb1", []net.IP{nil}, nil, time.Hour, ErrInvalidArgument, "IP address"},
		{"unspecified IP", ca.certPEM, ca.keyPEM, "lb1", []net.IP{net.IPv4zero}, nil, time.Hour, ErrInvalidArgument, "0.0.0.0"},
		{"CA key of another CA", ca.certPEM, other.keyPEM, "lb1", nil, nil, time.Hour, ErrKeyMismatch, "CA key"},
		{"node cert as CA", nodePEM, nodeKey, "lb1", nil, nil, time.Hour, ErrNotCA, "not a CA"},
		{"garbage CA", []byte("garbage"), ca.keyPEM, "lb1", nil, nil, time.Hour, ErrMalformed, "no PEM certificate"},
		{"garbage CA key", ca.certPEM, []byte("garbage"), "lb1", nil, nil, time.Hour, ErrMalformed, "no PEM private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := NewNodeCert(tt.caCert, tt.caKey, tt.node, tt.ips, tt.dns, tt.validity)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !contains(err.Error(), tt.wantInText) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantInText)
			}
		})
	}
}

func isP256(pub any) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	return ok && k.Curve == elliptic.P256()
}

func within(got, want time.Time, tol time.Duration) bool {
	d := got.Sub(want)
	return d > -tol && d < tol
}
