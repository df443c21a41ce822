package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCA is a CA made by NewCA, parsed for tests that issue certificates with unusual templates.
type testCA struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
	key             crypto.Signer
}

func newTestCA(t testing.TB, name string) testCA {
	t.Helper()
	certPEM, keyPEM, err := NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	cert, key, err := parseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("parseCA: %v", err)
	}
	return testCA{certPEM: certPEM, keyPEM: keyPEM, cert: cert, key: key}
}

// node issues a normal node certificate with NewNodeCert.
func (ca testCA) node(t testing.TB, node string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := NewNodeCert(ca.certPEM, ca.keyPEM, node, nil, nil, time.Hour)
	if err != nil {
		t.Fatalf("NewNodeCert(%s): %v", node, err)
	}
	return certPEM, keyPEM
}

// issue signs a certificate built from a node template changed by mutate (validity, usages, SANs, IsCA).
func (ca testCA) issue(t testing.TB, node string, mutate func(*x509.Certificate)) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: node},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{node},
	}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	kp, err := encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kp
}

// writeFile writes data to dir/name with mode (exactly, regardless of the umask).
func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeIdentity writes a CA, certificate and key into dir and returns their Files.
func writeIdentity(t testing.TB, dir string, caPEM, certPEM, keyPEM []byte) Files {
	t.Helper()
	return Files{
		CA:   writeFile(t, dir, "ca.pem", caPEM, 0o644),
		Cert: writeFile(t, dir, "cert.pem", certPEM, 0o644),
		Key:  writeFile(t, dir, "key.pem", keyPEM, 0o600),
	}
}

// replaceFile rewrites path the way rotation tools do: a new file renamed over the old one.
func replaceFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	writeFile(t, filepath.Dir(tmp), filepath.Base(tmp), data, mode)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is a settable clock for Reloader tests, safe for the handshake goroutines that read it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
