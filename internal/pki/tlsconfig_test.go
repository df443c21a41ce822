package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// handshakeResult is what each side of one connection saw.
type handshakeResult struct {
	client, server       tls.ConnectionState
	clientErr, serverErr error
}

// handshake connects client to server over loopback TCP; each side completes the handshake and the server sends
// one byte the client reads, so a client refused by the server (TLS 1.3 reports that after the client's
// Handshake returned) fails too.
func handshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type side struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan side, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- side{err: err}
			return
		}
		tc := tls.Server(c, server)
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1})
		}
		done <- side{tc.ConnectionState(), err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, client)
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	err = tc.Handshake()
	if err == nil {
		_, err = io.ReadFull(tc, make([]byte, 1))
	}
	s := <-done
	return handshakeResult{client: tc.ConnectionState(), server: s.cs, clientErr: err, serverErr: s.err}
}

func (h handshakeResult) ok() bool { return h.clientErr == nil && h.serverErr == nil }

func peerSerial(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].SerialNumber.String()
}

func TestHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	lb1 := newReloaderFixture(t, ca, "lb1")
	lb2 := newReloaderFixture(t, ca, "lb2")
	foreign := newReloaderFixture(t, newTestCA(t, "foreign"), "lb3")

	h := handshake(t, lb1.r.ServerConfig(), lb2.r.ClientConfig())
	if !h.ok() {
		t.Fatalf("handshake between two nodes of one CA: client %v, server %v", h.clientErr, h.serverErr)
	}
	if h.client.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", h.client.Version)
	}
	if got := PeerNames(h.client); !slices.Equal(got, []string{"lb1"}) {
		t.Errorf("client sees %q, want [lb1]", got)
	}
	if got := PeerNames(h.server); !slices.Equal(got, []string{"lb2"}) {
		t.Errorf("server sees %q, want [lb2]", got)
	}

	// A stranger whose certificate comes from another CA but who trusts ours: the server alone must refuse it.
	stranger := newTestCA(t, "stranger")
	sCert, sKey := stranger.node(t, "lb1")
	sFiles := writeIdentity(t, t.TempDir(), append(append([]byte{}, stranger.certPEM...), ca.certPEM...), sCert, sKey)
	sr, err := NewReloader(sFiles, "lb1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	noCert := lb2.r.ClientConfig()
	noCert.GetClientCertificate = nil
	tls12 := lb2.r.ClientConfig()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	failures := []struct {
		name           string
		server, client *tls.Config
	}{
		{"client from a foreign CA", lb1.r.ServerConfig(), foreign.r.ClientConfig()},
		{"client from a foreign CA, trusting the server", lb1.r.ServerConfig(), sr.ClientConfig()},
		{"server from a foreign CA", foreign.r.ServerConfig(), lb2.r.ClientConfig()},
		{"client without a certificate", lb1.r.ServerConfig(), noCert},
		{"client limited to TLS 1.2", lb1.r.ServerConfig(), tls12},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			h := handshake(t, tt.server, tt.client)
			if h.clientErr == nil || h.serverErr == nil {
				t.Fatalf("handshake accepted: client err %v, server err %v", h.clientErr, h.serverErr)
			}
			t.Logf("client: %v; server: %v", h.clientErr, h.serverErr)
		})
	}

	// A certificate that expired by the server's clock is refused at the handshake.
	lb1.clock.Advance(2 * time.Hour)
	if h := handshake(t, lb1.r.ServerConfig(), lb2.r.ClientConfig()); h.serverErr == nil {
		t.Error("server accepted a client certificate that expired by its clock")
	}
}

// TestHandshakeRotation rotates certificates and the CA under running configurations: new handshakes use the new
// files without a new Reloader or tls.Config, and broken files keep the old ones.
func TestHandshakeRotation(t *testing.T) {
	ca := newTestCA(t, "ca")
	lb1 := newReloaderFixture(t, ca, "lb1")
	lb2 := newReloaderFixture(t, ca, "lb2")
	server, client := lb1.r.ServerConfig(), lb2.r.ClientConfig()
	advance := func() { lb1.clock.Advance(time.Second); lb2.clock.Advance(time.Second) }

	h := handshake(t, server, client)
	if !h.ok() {
		t.Fatalf("initial handshake: %v / %v", h.clientErr, h.serverErr)
	}
	old := peerSerial(h.client)

	// 1. The server's certificate is rotated: the client sees the new one.
	next := lb1.rotate(t, ca, "lb1")
	advance()
	h = handshake(t, server, client)
	if !h.ok() || peerSerial(h.client) != next.SerialNumber.String() {
		t.Fatalf("after rotation: ok=%v serial %s, want %s (was %s)", h.ok(), peerSerial(h.client), next.SerialNumber, old)
	}

	// 2. Broken files on the server: it keeps serving the rotated certificate.
	replaceFile(t, lb1.files.Cert, []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644)
	advance()
	h = handshake(t, server, client)
	if !h.ok() || peerSerial(h.client) != next.SerialNumber.String() {
		t.Fatalf("with broken files: ok=%v (%v / %v) serial %s, want the previous %s", h.ok(), h.clientErr, h.serverErr,
			peerSerial(h.client), next.SerialNumber)
	}

	// 3. CA rotation. The server moves to CA2 alone (certificate and bundle): the client, still on CA1, is refused.
	ca2 := newTestCA(t, "ca2")
	replaceFile(t, lb1.files.CA, ca2.certPEM, 0o644)
	lb1.rotate(t, ca2, "lb1")
	advance()
	if h = handshake(t, server, client); h.ok() {
		t.Fatal("a CA1 client was accepted by a server that trusts only CA2")
	}
	// The client moves to CA2 too: accepted again, with the same configurations.
	replaceFile(t, lb2.files.CA, ca2.certPEM, 0o644)
	lb2.rotate(t, ca2, "lb2")
	advance()
	if h = handshake(t, server, client); !h.ok() {
		t.Fatalf("both on CA2: %v / %v", h.clientErr, h.serverErr)
	}
	if n := lb1.logs.CountLinesSince(0, "do not load"); n != 1 {
		t.Errorf("server logged %d load failures, want 1", n)
	}
}

func TestVerifyPeer(t *testing.T) {
	ca := newTestCA(t, "ca")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	parse := func(certPEM []byte) []*x509.Certificate {
		c, err := parseCerts(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good, _ := ca.node(t, "lb1")
	nameless, _ := ca.issue(t, "x", func(c *x509.Certificate) { c.DNSNames = []string{"*.example.com"} })
	clientOnly, _ := ca.issue(t, "lb1", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })
	now := time.Now()
	tests := []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
		want  error
	}{
		{"node certificate", parse(good), now, nil},
		{"no certificate", nil, now, errNoPeerCert},
		{"names no node", parse(nameless), now, ErrWrongNode},
		{"client usage only", parse(clientOnly), now, ErrUsage},
		{"expired", parse(good), now.Add(2 * time.Hour), ErrExpired},
	}
	for _, tt := range tests {
		if err := VerifyPeer(pool, tt.chain, tt.at); !errors.Is(err, tt.want) {
			t.Errorf("%s: VerifyPeer = %v, want %v", tt.name, err, tt.want)
		}
	}
}
