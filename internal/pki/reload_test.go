package pki

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// reloaderFixture is one node's files on disk with a Reloader over them and a fake clock.
type reloaderFixture struct {
	ca    testCA
	files Files
	clock *fakeClock
	logs  *testutil.LogSink
	r     *Reloader
}

func newReloaderFixture(t *testing.T, ca testCA, node string) *reloaderFixture {
	t.Helper()
	certPEM, keyPEM := ca.node(t, node)
	fx := &reloaderFixture{ca: ca, files: writeIdentity(t, t.TempDir(), ca.certPEM, certPEM, keyPEM), clock: newFakeClock(),
		logs: testutil.NewLogSink(t)}
	r, err := NewReloader(fx.files, node, fx.logs.Logger(slog.LevelInfo), fx.clock.Now)
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	fx.r = r
	return fx
}

// rotate writes a new certificate and key for node (from ca), as cert-manager would.
func (fx *reloaderFixture) rotate(t *testing.T, ca testCA, node string) *x509.Certificate {
	t.Helper()
	certPEM, keyPEM := ca.node(t, node)
	replaceFile(t, fx.files.Key, keyPEM, 0o600)
	replaceFile(t, fx.files.Cert, certPEM, 0o644)
	c, _ := parseCerts(certPEM)
	return c[0]
}

func serial(b *Bundle) string { return b.Cert.Leaf.SerialNumber.String() }

func TestReloaderRotation(t *testing.T) {
	fx := newReloaderFixture(t, newTestCA(t, "ca"), "lb1")
	first := serial(fx.r.Current())

	next := fx.rotate(t, fx.ca, "lb1")
	if got := serial(fx.r.Current()); got != first {
		t.Fatalf("reloaded within the same second (serial %s), want the files looked at once per second", got)
	}
	fx.clock.Advance(time.Second)
	if got := serial(fx.r.Current()); got != next.SerialNumber.String() {
		t.Fatalf("after a second: serial %s, want the rotated %s", got, next.SerialNumber)
	}
	if !fx.logs.ContainsLine("TLS certificates reloaded", next.SerialNumber.Text(16)) {
		t.Error("reload not logged with the new serial")
	}

	// Unchanged files are not reloaded (no log line per second).
	mark := fx.logs.Mark()
	for range 5 {
		fx.clock.Advance(time.Second)
		fx.r.Current()
	}
	if n := fx.logs.CountLinesSince(mark, "reloaded"); n != 0 {
		t.Errorf("unchanged files reloaded %d times", n)
	}
}

func TestReloaderKeepsOldBundleOnBrokenFiles(t *testing.T) {
	fx := newReloaderFixture(t, newTestCA(t, "ca"), "lb1")
	first := serial(fx.r.Current())
	mark := fx.logs.Mark()

	replaceFile(t, fx.files.Cert, []byte("garbage"), 0o644)
	for range 5 {
		fx.clock.Advance(time.Second)
		if got := serial(fx.r.Current()); got != first {
			t.Fatalf("serving %s after the cert file broke, want the old %s", got, first)
		}
	}
	if n := fx.logs.CountLinesSince(mark, "do not load", "no PEM certificate"); n != 1 {
		t.Errorf("broken cert logged %d times, want once:\n%s", n, fx.logs.String())
	}

	// A different failure is logged once more: a key that is world-readable.
	certPEM, keyPEM := fx.ca.node(t, "lb1")
	replaceFile(t, fx.files.Key, keyPEM, 0o644)
	replaceFile(t, fx.files.Cert, certPEM, 0o644)
	for range 3 {
		fx.clock.Advance(time.Second)
		fx.r.Current()
	}
	if n := fx.logs.CountLinesSince(mark, "do not load", "chmod 600"); n != 1 {
		t.Errorf("insecure key logged %d times, want once", n)
	}
	if got := serial(fx.r.Current()); got != first {
		t.Fatalf("serving %s with an insecure key file, want the old %s", got, first)
	}

	// Fixing the mode (chmod changes neither size nor mtime, only ctime) is picked up: a failing state is retried.
	if err := os.Chmod(fx.files.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	fx.clock.Advance(time.Second)
	c, _ := parseCerts(certPEM)
	if got := serial(fx.r.Current()); got != c[0].SerialNumber.String() {
		t.Fatalf("after the fix: serial %s, want %s", got, c[0].SerialNumber)
	}
}

func TestReloaderWaitsForNotYetValidCert(t *testing.T) {
	fx := newReloaderFixture(t, newTestCA(t, "ca"), "lb1")
	first := serial(fx.r.Current())
	start := fx.clock.Now()
	certPEM, keyPEM := fx.ca.issue(t, "lb1", func(c *x509.Certificate) { c.NotBefore = start.Add(10 * time.Second) })
	replaceFile(t, fx.files.Key, keyPEM, 0o600)
	replaceFile(t, fx.files.Cert, certPEM, 0o644)
	fx.clock.Advance(time.Second)
	if got := serial(fx.r.Current()); got != first {
		t.Fatalf("took a not yet valid certificate")
	}
	fx.clock.Advance(10 * time.Second)
	if got := serial(fx.r.Current()); got == first {
		t.Fatalf("still the old certificate after the new one became valid")
	}
}

func TestReloaderLogsExpiryOnce(t *testing.T) {
	fx := newReloaderFixture(t, newTestCA(t, "ca"), "lb1")
	fx.clock.Advance(2 * time.Hour) // node certificates of newTestCA live an hour
	for range 3 {
		fx.r.Current()
		fx.clock.Advance(time.Second)
	}
	if n := fx.logs.CountLinesSince(0, "has expired"); n != 1 {
		t.Errorf("expiry logged %d times, want once", n)
	}
}

func TestNewReloaderBadFiles(t *testing.T) {
	ca := newTestCA(t, "ca")
	certPEM, keyPEM := ca.node(t, "lb1")
	f := writeIdentity(t, t.TempDir(), ca.certPEM, certPEM, keyPEM)
	if _, err := NewReloader(f, "lb2", nil, nil); !errors.Is(err, ErrWrongNode) {
		t.Errorf("NewReloader for another node = %v, want ErrWrongNode", err)
	}
	r, err := NewReloader(f, "lb1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Current() == nil || r.Files() != f || r.Node() != "lb1" {
		t.Error("Reloader accessors")
	}
}
