package pki

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"
)

// FuzzLoadPEM feeds arbitrary bytes to the PEM parsers Load uses for each file: they must return an error or a
// consistent result, never panic.
func FuzzLoadPEM(f *testing.F) {
	ca := newTestCA(f, "fuzz CA")
	certPEM, keyPEM := ca.node(f, "lb1")
	for _, seed := range [][]byte{ca.certPEM, certPEM, keyPEM, append(append([]byte{}, certPEM...), keyPEM...),
		[]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), nil} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if certs, err := parseCerts(data); err == nil && len(certs) == 0 {
			t.Fatal("parseCerts: no error and no certificate")
		}
		if key, err := parseKey(data); err == nil && key == nil {
			t.Fatal("parseKey: no error and no key")
		}
	})
}

// FuzzCheckBundle drives the whole content check of Load (checkBundle) with three arbitrary files: whatever it
// accepts must be a consistent identity for the node.
func FuzzCheckBundle(f *testing.F) {
	ca := newTestCA(f, "fuzz CA")
	certPEM, keyPEM := ca.node(f, "lb1")
	other := newTestCA(f, "other")
	f.Add(ca.certPEM, certPEM, keyPEM)
	f.Add(other.certPEM, certPEM, keyPEM)
	f.Add(certPEM, certPEM, keyPEM)
	f.Add(ca.certPEM, ca.certPEM, ca.keyPEM)
	f.Add([]byte{}, []byte{}, []byte{})
	now := time.Now()
	files := Files{CA: "ca.pem", Cert: "cert.pem", Key: "key.pem"}
	f.Fuzz(func(t *testing.T, caPEM, certPEM, keyPEM []byte) {
		b, err := checkBundle(files, caPEM, certPEM, keyPEM, "lb1", now)
		if err != nil {
			if _, ok := err.(*FileError); !ok {
				t.Fatalf("error %v is a %T, not a *FileError", err, err)
			}
			return
		}
		key, ok := b.Cert.PrivateKey.(crypto.Signer)
		if b.Cert.Leaf == nil || !HasName(NodeNames(b.Cert.Leaf), "lb1") || !ok || !keyMatches(b.Cert.Leaf, key) {
			t.Fatal("accepted an inconsistent bundle")
		}
		var chain []*x509.Certificate
		for _, der := range b.Cert.Certificate {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("accepted a chain that does not parse: %v", err)
			}
			chain = append(chain, c)
		}
		if err := VerifyPeer(b.CAs, chain, now); err != nil {
			t.Fatalf("accepted a bundle its own pool does not verify: %v", err)
		}
	})
}
