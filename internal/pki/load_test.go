package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	ca := newTestCA(t, "test CA")
	certPEM, keyPEM := ca.node(t, "lb1")
	dir := t.TempDir()
	f := writeIdentity(t, dir, ca.certPEM, certPEM, keyPEM)
	now := time.Now()

	b, err := Load(f, "lb1", now)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if b.Cert.Leaf == nil || !HasName(NodeNames(b.Cert.Leaf), "lb1") {
		t.Errorf("Leaf = %v, want the lb1 certificate", b.Cert.Leaf)
	}
	if !b.NotAfter.Equal(b.Cert.Leaf.NotAfter) {
		t.Errorf("NotAfter = %v, want the leaf's %v", b.NotAfter, b.Cert.Leaf.NotAfter)
	}
	if _, err := b.Cert.Leaf.Verify(x509.VerifyOptions{Roots: b.CAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("bundle's pool does not verify its own certificate: %v", err)
	}

	// A certificate naming the node by URI only, and one issued through an intermediate, are accepted too.
	uriCert, uriKey := ca.issue(t, "x", func(c *x509.Certificate) { c.DNSNames = nil; c.URIs = append(c.URIs, NodeURI("lb1")) })
	if _, err := Load(writeIdentity(t, t.TempDir(), ca.certPEM, uriCert, uriKey), "lb1", now); err != nil {
		t.Errorf("URI SAN only: %v", err)
	}
	root, inter := newChainCA(t)
	chainCert, chainKey := inter.node(t, "lb1")
	chainPEM := append(append([]byte{}, chainCert...), inter.certPEM...)
	if _, err := Load(writeIdentity(t, t.TempDir(), root.certPEM, chainPEM, chainKey), "lb1", now); err != nil {
		t.Errorf("certificate through an intermediate: %v", err)
	}
	// An expired CA left in the bundle next to the valid one is harmless.
	expiredCA := selfSignedCA(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	withExpired := append(append([]byte{}, expiredCA...), ca.certPEM...)
	if _, err := Load(writeIdentity(t, t.TempDir(), withExpired, certPEM, keyPEM), "lb1", now); err != nil {
		t.Errorf("expired CA next to the valid one: %v", err)
	}
	// A CA bundle with two CAs (a CA rotation in progress) trusts either.
	other := newTestCA(t, "other")
	two := append(append([]byte{}, other.certPEM...), ca.certPEM...)
	if _, err := Load(writeIdentity(t, t.TempDir(), two, certPEM, keyPEM), "lb1", now); err != nil {
		t.Errorf("two CAs in the bundle: %v", err)
	}
}

// newChainCA returns a root allowing one intermediate, and an intermediate CA under it.
func newChainCA(t *testing.T) (root, inter testCA) {
	t.Helper()
	root = newTestCA(t, "root")
	// NewCA makes MaxPathLen 0 roots; re-sign a root allowing one intermediate.
	rc, rk := root.issue(t, "root", func(c *x509.Certificate) {
		*c = x509.Certificate{SerialNumber: c.SerialNumber, Subject: c.Subject, NotBefore: c.NotBefore, NotAfter: c.NotBefore.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1}
	})
	// issue signs with root's key; make it self-signed by parsing and re-creating with its own key.
	rcert, _ := parseCerts(rc)
	rkey, _ := parseKey(rk)
	der, err := x509.CreateCertificate(rand.Reader, rcert[0], rcert[0], rkey.Public(), rkey)
	if err != nil {
		t.Fatal(err)
	}
	root = testCA{certPEM: pemCert(der), keyPEM: rk, key: rkey}
	root.cert, _ = x509.ParseCertificate(der)
	ic, ik := root.issue(t, "intermediate", func(c *x509.Certificate) {
		c.DNSNames, c.ExtKeyUsage, c.NotAfter = nil, nil, c.NotBefore.Add(12*time.Hour)
		c.KeyUsage, c.IsCA, c.MaxPathLen, c.MaxPathLenZero = x509.KeyUsageCertSign, true, 0, true
	})
	icert, _ := parseCerts(ic)
	ikey, _ := parseKey(ik)
	return root, testCA{certPEM: ic, keyPEM: ik, cert: icert[0], key: ikey}
}

// selfSignedCA returns a CA certificate valid from notBefore to notAfter.
func selfSignedCA(t *testing.T, notBefore, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "old CA"}, NotBefore: notBefore,
		NotAfter: notAfter, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pemCert(der)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestLoadBadInput(t *testing.T) {
	ca := newTestCA(t, "test CA")
	other := newTestCA(t, "other CA")
	certPEM, keyPEM := ca.node(t, "lb1")
	_, otherKey := ca.node(t, "lb1")
	lb2Cert, lb2Key := ca.node(t, "lb2")
	foreignCert, foreignKey := other.node(t, "lb1")
	expCert, expKey := ca.issue(t, "lb1", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	})
	futCert, futKey := ca.issue(t, "lb1", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
	})
	serverOnly, serverOnlyKey := ca.issue(t, "lb1", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	caAsLeaf, caAsLeafKey := ca.issue(t, "lb1", func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign })
	keyBlock, _ := pem.Decode(keyPEM)
	certBlock, _ := pem.Decode(certPEM)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
	truncated := []byte(strings.Replace(string(certPEM), string(certPEM[60:120]), "", 1))

	type files struct{ ca, cert, key []byte }
	good := files{ca.certPEM, certPEM, keyPEM}
	tests := []struct {
		name     string
		files    files
		node     string
		now      time.Time
		setup    func(t *testing.T, f *Files) // changes the written files
		rootOnly bool                         // needs a non-root user to fail
		which    string
		want     error
		text     string
	}{
		{name: "CA path not set", files: good, setup: func(_ *testing.T, f *Files) { f.CA = "" }, which: WhichCA, want: ErrMissing, text: "CA file is not set"},
		{name: "CA missing", files: good, setup: remove(func(f *Files) string { return f.CA }), which: WhichCA, want: ErrMissing, text: "does not exist"},
		{name: "cert missing", files: good, setup: remove(func(f *Files) string { return f.Cert }), which: WhichCert, want: ErrMissing, text: "cert file"},
		{name: "key missing", files: good, setup: remove(func(f *Files) string { return f.Key }), which: WhichKey, want: ErrMissing, text: "key file"},
		{name: "key is a directory", files: good, setup: func(t *testing.T, f *Files) { f.Key = t.TempDir() }, which: WhichKey, want: ErrUnreadable, text: "is a directory"},
		{name: "cert unreadable", files: good, setup: chmod(func(f *Files) string { return f.Cert }, 0), rootOnly: true, which: WhichCert, want: ErrUnreadable, text: "cannot be read"},
		{name: "key mode 0644", files: good, setup: chmod(func(f *Files) string { return f.Key }, 0o644), which: WhichKey, want: ErrInsecureMode, text: "is readable by others (mode 0644): chmod 600 it"},
		{name: "key mode 0640", files: good, setup: chmod(func(f *Files) string { return f.Key }, 0o640), which: WhichKey, want: ErrInsecureMode, text: "(mode 0640)"},
		{name: "key mode 0620", files: good, setup: chmod(func(f *Files) string { return f.Key }, 0o620), which: WhichKey, want: ErrInsecureMode, text: "writable by others"},
		{name: "CA garbage", files: files{[]byte("not PEM"), certPEM, keyPEM}, which: WhichCA, want: ErrMalformed, text: "no PEM certificate"},
		{name: "CA empty", files: files{nil, certPEM, keyPEM}, which: WhichCA, want: ErrMalformed, text: "no PEM certificate"},
		{name: "cert garbage", files: files{ca.certPEM, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), keyPEM}, which: WhichCert, want: ErrMalformed, text: "does not parse"},
		{name: "cert truncated", files: files{ca.certPEM, truncated, keyPEM}, which: WhichCert, want: ErrMalformed},
		{name: "cert is DER", files: files{ca.certPEM, certBlock.Bytes, keyPEM}, which: WhichCert, want: ErrMalformed, text: "not DER"},
		{name: "cert file holds the key", files: files{ca.certPEM, keyPEM, keyPEM}, which: WhichCert, want: ErrMalformed, text: "keep keys in their own file"},
		{name: "key garbage", files: files{ca.certPEM, certPEM, []byte("garbage")}, which: WhichKey, want: ErrMalformed, text: "no PEM private key"},
		{name: "key file holds the cert", files: files{ca.certPEM, certPEM, certPEM}, which: WhichKey, want: ErrMalformed, text: "swapped"},
		{name: "key bad DER", files: files{ca.certPEM, certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyBlock.Bytes[:20]})}, which: WhichKey, want: ErrMalformed, text: "does not parse"},
		{name: "key encrypted", files: files{ca.certPEM, certPEM, encrypted}, which: WhichKey, want: ErrMalformed, text: "encrypted"},
		{name: "two keys", files: files{ca.certPEM, certPEM, append(append([]byte{}, keyPEM...), otherKey...)}, which: WhichKey, want: ErrMalformed, text: "more than one"},
		{name: "key not matching cert", files: files{ca.certPEM, certPEM, otherKey}, which: WhichKey, want: ErrKeyMismatch, text: "is not the key of the certificate"},
		{name: "cert names another node", files: files{ca.certPEM, lb2Cert, lb2Key}, which: WhichCert, want: ErrWrongNode, text: `names nodes ["lb2"]`},
		{name: "expired", files: files{ca.certPEM, expCert, expKey}, which: WhichCert, want: ErrExpired, text: "expired at"},
		{name: "expired by the clock", files: good, now: time.Now().Add(2 * time.Hour), which: WhichCert, want: ErrExpired},
		{name: "not yet valid", files: files{ca.certPEM, futCert, futKey}, which: WhichCert, want: ErrNotYetValid, text: "clock"},
		{name: "CA did not sign it", files: files{ca.certPEM, foreignCert, foreignKey}, which: WhichCert, want: ErrUntrusted, text: "issue it from the CA in"},
		{name: "CA file is not a CA", files: files{certPEM, certPEM, keyPEM}, which: WhichCA, want: ErrNotCA, text: "which is not a CA"},
		{name: "CA expired", files: good, now: time.Now().Add(25 * time.Hour), which: WhichCA, want: ErrExpired},
		{name: "cert lacks ClientAuth", files: files{ca.certPEM, serverOnly, serverOnlyKey}, which: WhichCert, want: ErrUsage, text: "lacks extended key usage ClientAuth"},
		{name: "cert is a CA", files: files{ca.certPEM, caAsLeaf, caAsLeafKey}, which: WhichCert, want: ErrUsage, text: "CA certificate"},
		{name: "CA file oversized", files: files{append(make([]byte, maxPEMFile), ca.certPEM...), certPEM, keyPEM}, which: WhichCA, want: ErrMalformed, text: "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rootOnly && os.Geteuid() == 0 {
				t.Skip("root reads any file")
			}
			f := writeIdentity(t, t.TempDir(), tt.files.ca, tt.files.cert, tt.files.key)
			if tt.setup != nil {
				tt.setup(t, &f)
			}
			node := tt.node
			if node == "" {
				node = "lb1"
			}
			now := tt.now
			if now.IsZero() {
				now = time.Now()
			}
			b, err := Load(f, node, now)
			if err == nil {
				t.Fatalf("Load succeeded (%v), want %v", b.Cert.Leaf.Subject, tt.want)
			}
			t.Log(err)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v (%T) is not a *FileError", err, err)
			}
			if fe.Which != tt.which {
				t.Errorf("Which = %q, want %q (%v)", fe.Which, tt.which, err)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %q, want it to contain %q", err, tt.text)
			}
			if fe.Path != "" && !strings.Contains(err.Error(), fe.Path) {
				t.Errorf("err = %q does not name the file %s", err, fe.Path)
			}
		})
	}

	if _, err := Load(writeIdentity(t, t.TempDir(), good.ca, good.cert, good.key), "lb 1", time.Now()); !errors.Is(err, ErrInvalidNode) {
		t.Errorf("invalid node name: err = %v, want ErrInvalidNode", err)
	}
}

// TestLoadMessage pins the exact wording the CLI will print for the most common mistake.
func TestLoadMessage(t *testing.T) {
	ca := newTestCA(t, "test CA")
	certPEM, keyPEM := ca.node(t, "lb1")
	dir := t.TempDir()
	f := writeIdentity(t, dir, ca.certPEM, certPEM, keyPEM)
	os.Chmod(f.Key, 0o644)
	_, err := Load(f, "lb1", time.Now())
	want := "key file " + f.Key + " is readable by others (mode 0644): chmod 600 it"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func remove(path func(*Files) string) func(*testing.T, *Files) {
	return func(t *testing.T, f *Files) {
		if err := os.Remove(path(f)); err != nil {
			t.Fatal(err)
		}
	}
}

func chmod(path func(*Files) string, mode os.FileMode) func(*testing.T, *Files) {
	return func(t *testing.T, f *Files) {
		if err := os.Chmod(path(f), mode); err != nil {
			t.Fatal(err)
		}
	}
}
