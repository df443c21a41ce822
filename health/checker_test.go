package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func checkWithin(t *testing.T, c Checker, addr string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Check(ctx, addr)
}

func TestTCPChecker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()

	c := NewTCPChecker()
	if err := checkWithin(t, c, ln.Addr().String()); err != nil {
		t.Fatalf("check of listening port: %v", err)
	}
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("check did not connect")
	}

	closed := closedPort(t)
	err = checkWithin(t, c, closed)
	if err == nil {
		t.Fatalf("check of closed port %s passed", closed)
	}
	t.Log(err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Check(ctx, ln.Addr().String()); !errors.Is(err, context.Canceled) {
		t.Fatalf("check with cancelled ctx = %v, want context.Canceled", err)
	}
}

// newHTTPBackend serves a few paths and counts new connections.
func newHTTPBackend(t *testing.T, tlsOn bool, conns *atomic.Int64) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/readyz", http.StatusFound) })
	mux.HandleFunc("/hang", func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew && conns != nil {
			conns.Add(1)
		}
	}
	if tlsOn {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts
}

func TestHTTPChecker(t *testing.T) {
	var conns atomic.Int64
	ts := newHTTPBackend(t, false, &conns)
	addr := ts.Listener.Addr().String()
	tests := []struct {
		path       string
		wantStatus bool // error wraps ErrStatus
		ok         bool
	}{
		{"/readyz", false, true},
		{"readyz", false, true}, // leading slash added
		{"/nocontent", false, true},
		{"/fail", true, false},
		{"/redirect", true, false}, // not followed
		{"/missing", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			err := checkWithin(t, NewHTTPChecker(HTTPOptions{Path: tt.path}), addr)
			if (err == nil) != tt.ok {
				t.Fatalf("check %s: %v, want ok=%v", tt.path, err, tt.ok)
			}
			if errors.Is(err, ErrStatus) != tt.wantStatus {
				t.Fatalf("check %s: %v, want ErrStatus=%v", tt.path, err, tt.wantStatus)
			}
		})
	}

	// Every check uses a fresh connection, also from one checker.
	c := NewHTTPChecker(HTTPOptions{Scheme: "http", Path: "/readyz"})
	before := conns.Load()
	for range 3 {
		if err := checkWithin(t, c, addr); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load() - before; n != 3 {
		t.Fatalf("3 checks opened %d connections: connections are reused", n)
	}

	// A check is bounded by ctx even when the backend never answers.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := NewHTTPChecker(HTTPOptions{Path: "/hang"}).Check(ctx, addr)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("hanging check: %v after %v", err, time.Since(start))
	}

	if err := checkWithin(t, NewHTTPChecker(HTTPOptions{Path: "/readyz"}), closedPort(t)); err == nil {
		t.Fatal("check of closed port passed")
	}
	if err := checkWithin(t, NewHTTPChecker(HTTPOptions{Scheme: "ftp"}), addr); !errors.Is(err, ErrScheme) {
		t.Fatalf("ftp scheme: %v, want ErrScheme", err)
	}
}

func TestHTTPSChecker(t *testing.T) {
	ts := newHTTPBackend(t, true, nil)
	addr := ts.Listener.Addr().String()
	dir := t.TempDir()
	serverCA := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongCA, _ := selfSigned(t, dir, "wrong-ca")

	load := func(ca string, insecure bool) *tls.Config {
		t.Helper()
		cfg, err := LoadTLSConfig(ca, "", "", insecure)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name string
		tls  *tls.Config
		path string
		ok   bool
	}{
		{"CA file verifies", load(serverCA, false), "/readyz", true},
		{"CA file, 503 fails", load(serverCA, false), "/fail", false},
		{"wrong CA fails", load(wrongCA, false), "/readyz", false},
		{"system roots fail", nil, "/readyz", false},
		{"insecure skips verification", load("", true), "/readyz", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkWithin(t, NewHTTPChecker(HTTPOptions{Scheme: "https", Path: tt.path, TLS: tt.tls}), addr)
			if (err == nil) != tt.ok {
				t.Fatalf("check: %v, want ok=%v", err, tt.ok)
			}
			if tt.name == "wrong CA fails" {
				var unknown x509.UnknownAuthorityError
				if !errors.As(err, &unknown) {
					t.Fatalf("wrong CA: %v, want x509.UnknownAuthorityError", err)
				}
			}
		})
	}
}

func TestHTTPSCheckerClientCertificate(t *testing.T) {
	dir := t.TempDir()
	clientCert, clientKey := selfSigned(t, dir, "client")
	pemBytes, err := os.ReadFile(clientCert)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(pemBytes)

	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	ts.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake is expected
	ts.StartTLS()
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()

	without, err := LoadTLSConfig("", "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWithin(t, NewHTTPChecker(HTTPOptions{Scheme: "https", TLS: without}), addr); err == nil {
		t.Fatal("check without client certificate passed")
	}
	with, err := LoadTLSConfig("", clientCert, clientKey, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWithin(t, NewHTTPChecker(HTTPOptions{Scheme: "https", TLS: with}), addr); err != nil {
		t.Fatalf("check with client certificate: %v", err)
	}
}

// TestMonitorRealTCP runs the Monitor on the real clock with the real TCP
// checker: a live backend becomes healthy, a closed port never does, and a
// backend whose listener closes is taken out after fall checks.
func TestMonitorRealTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	live, dead := ln.Addr().String(), closedPort(t)

	m, err := NewMonitor(Config{Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2,
		Checker: NewTCPChecker()}, BackendList(dead, live))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, 5*time.Second, func() bool {
		h := m.Healthy()
		return len(h) == 1 && h[0] == live && m.Backends()[0].State == StateUnhealthy
	})
	ln.Close()
	waitFor(t, 5*time.Second, func() bool { return len(m.Healthy()) == 0 })
	if s := m.Backends()[1]; s.State != StateUnhealthy || s.LastError == "" || s.Latency <= 0 || s.LastCheck.IsZero() {
		t.Fatalf("closed backend: %+v", s)
	}
}
