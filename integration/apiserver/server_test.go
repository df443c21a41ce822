package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func do(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHandlers(t *testing.T) {
	tests := []struct {
		name     string
		admin    []string // POST paths sent to the admin handler first
		path     string
		wantCode int
		wantBody string
	}{
		{"name on root", nil, "/", 200, "api1\n"},
		{"name on any path", nil, "/api/v1/namespaces", 200, "api1\n"},
		{"readyz ok", nil, "/readyz", 200, "ok\n"},
		{"healthz ok", nil, "/healthz", 200, "ok\n"},
		{"readyz unhealthy", []string{"/admin/unhealthy"}, "/readyz", 503, "unhealthy\n"},
		{"healthz unhealthy", []string{"/admin/unhealthy"}, "/healthz", 503, "unhealthy\n"},
		{"root still answers when unhealthy", []string{"/admin/unhealthy"}, "/", 200, "api1\n"},
		{"healthy again", []string{"/admin/unhealthy", "/admin/healthy"}, "/readyz", 200, "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer("api1", nil)
			for _, p := range tt.admin {
				if code, body := do(t, s.AdminHandler(), http.MethodPost, p); code != 200 {
					t.Fatalf("POST %s: %d %s", p, code, body)
				}
			}
			code, body := do(t, s.Handler(), http.MethodGet, tt.path)
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestAdminRejects(t *testing.T) {
	tests := []struct {
		method, path string
		wantCode     int
	}{
		{http.MethodPost, "/admin/slow?delay=soon", 400},
		{http.MethodPost, "/admin/slow?delay=-1s", 400},
		{http.MethodPost, "/admin/slow", 400},
		{http.MethodGet, "/admin/unhealthy", 405},
		{http.MethodPost, "/admin/nothing", 404},
	}
	for _, tt := range tests {
		s := NewServer("api1", nil)
		if code, _ := do(t, s.AdminHandler(), tt.method, tt.path); code != tt.wantCode {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, code, tt.wantCode)
		}
		if code, _ := do(t, s.Handler(), http.MethodGet, "/readyz"); code != 200 {
			t.Errorf("after %s %s: /readyz = %d, want 200 (state must be unchanged)", tt.method, tt.path, code)
		}
	}
}

func TestSlowThenHealthyClearsDelay(t *testing.T) {
	s := NewServer("api1", nil)
	if code, body := do(t, s.AdminHandler(), http.MethodPost, "/admin/slow?delay=150ms"); code != 200 || !strings.Contains(body, "delay=150ms") {
		t.Fatalf("slow: %d %q", code, body)
	}
	start := time.Now()
	if code, _ := do(t, s.Handler(), http.MethodGet, "/readyz"); code != 200 {
		t.Fatalf("slow /readyz = %d, want 200", code)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("slow /readyz took %s, want >= 150ms", d)
	}
	// The root path is never slowed: only health checks are.
	start = time.Now()
	do(t, s.Handler(), http.MethodGet, "/")
	if d := time.Since(start); d >= 150*time.Millisecond {
		t.Errorf("/ took %s while slow, want immediate", d)
	}
	do(t, s.AdminHandler(), http.MethodPost, "/admin/healthy")
	if _, body := do(t, s.AdminHandler(), http.MethodGet, "/admin/state"); body != "name=api1 unhealthy=false delay=0s\n" {
		t.Errorf("state after healthy = %q", body)
	}
}

func TestSlowHealthGivesUpWhenClientLeaves(t *testing.T) {
	s := NewServer("api1", nil)
	do(t, s.AdminHandler(), http.MethodPost, "/admin/slow?delay=1h")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil).WithContext(ctx))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("slow /readyz did not return after the client went away")
	}
}

// TestServeOverRealSockets runs the servers as main does: TLS with the
// generated certificate on loopback, admin over plain HTTP, clean shutdown.
func TestServeOverRealSockets(t *testing.T) {
	cert, err := selfSignedCert("api2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, NewServer("api2", nil), cert, apiLn, adminLn) }()

	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(url string) (int, string, *tls.ConnectionState) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.TLS
	}
	api := "https://" + apiLn.Addr().String()
	code, body, st := get(api + "/")
	if code != 200 || body != "api2\n" {
		t.Errorf("GET / = %d %q", code, body)
	}
	if st == nil || st.PeerCertificates[0].Subject.CommonName != "api2" {
		t.Errorf("TLS peer certificate not the generated one: %+v", st)
	}
	resp, err := client.Post("http://"+adminLn.Addr().String()+"/admin/unhealthy", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, _, _ := get(api + "/readyz"); code != 503 {
		t.Errorf("GET /readyz after unhealthy = %d, want 503", code)
	}
	tr.CloseIdleConnections()

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	if err := run([]string{"-nope"}); err == nil {
		t.Error("run with an unknown flag: want an error")
	}
	if err := run([]string{"-listen", "256.0.0.1:1"}); err == nil {
		t.Error("run with a bad listen address: want an error")
	}
}
