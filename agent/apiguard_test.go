package agent

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminWritesRefuseBrowsers sends POST /v1/force-leave the ways a web page open on the node could, and the
// way the CLI does. Only the CLI's form reaches the handler (409: no cluster here); nothing a page may send
// does. force-leave stands in for every write: they share guardWrite.
func TestAdminWritesRefuseBrowsers(t *testing.T) {
	b := nameServer(t, "b")
	a := startAgent(t, proxyConfig(b.Addr().String()), Options{})
	_, adminAddr := a.Addrs()
	url := "http://" + adminAddr.String() + "/v1/force-leave"
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"the CLI's request", nil, http.StatusConflict},
		{"a cross-site form (text/plain)", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"text/plain without Origin", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"form encoding", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"no content type", map[string]string{"Content-Type": ""}, http.StatusUnsupportedMediaType},
		{"JSON with an Origin", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"JSON with Sec-Fetch-Site", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"DNS rebinding Host", map[string]string{"Host": "evil.example"}, http.StatusForbidden},
		{"localhost Host", map[string]string{"Host": "localhost:7948"}, http.StatusConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.header["Host"] != "" {
				code := postHost(t, url, tt.header["Host"])
				if code != tt.want {
					t.Errorf("status %d, want %d", code, tt.want)
				}
				return
			}
			if code := post(t, url, `{"node":"x"}`, tt.header); code != tt.want {
				t.Errorf("status %d, want %d", code, tt.want)
			}
		})
	}
	// Reads: a rebinding page is refused, probes and scrapers are not.
	req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr.String()+"/v1/status", nil)
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /v1/status with Host evil.example = %d, want 403", resp.StatusCode)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr.String()+path, nil)
		req.Host = "lb1.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden {
			t.Errorf("GET %s by name = 403; probes and scrapers must stay open", path)
		}
	}
}

func postHost(t *testing.T, url, host string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"node":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminWritesFromAnotherMachine: without -http-token-file a write is taken from this machine only; with it,
// every write needs the bearer token. The peer address is set on the request, as the server would.
func TestAdminWritesFromAnotherMachine(t *testing.T) {
	b := nameServer(t, "b")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	const token = "0123456789abcdef0123"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		tokenFile string
		remote    string
		auth      string
		want      int
	}{
		{"no token configured, from loopback", "", "127.0.0.1:40000", "", http.StatusConflict},
		{"no token configured, from another machine", "", "10.0.0.9:40000", "", http.StatusForbidden},
		{"token configured, none sent, from loopback", tokenFile, "127.0.0.1:40000", "", http.StatusUnauthorized},
		{"wrong token", tokenFile, "10.0.0.9:40000", "Bearer wrong-token-wrong-token", http.StatusUnauthorized},
		{"right token, from another machine", tokenFile, "10.0.0.9:40000", "Bearer " + token, http.StatusConflict},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proxyConfig(b.Addr().String())
			cfg.HTTPAddr = "0.0.0.0:0"
			cfg.HTTPTokenFile = tt.tokenFile
			a, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:7948/v1/force-leave", strings.NewReader(`{"node":"x"}`))
			req.RemoteAddr = tt.remote
			req.Header.Set("Content-Type", "application/json")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			a.routes().ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status %d (%s), want %d", rec.Code, strings.TrimSpace(rec.Body.String()), tt.want)
			}
		})
	}
}

func TestTokenFileBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"world-readable", write("open", "0123456789abcdef0123", 0o644), "readable by others"},
		{"too short", write("short", "abc", 0o600), "at least 16"},
		{"two words", write("two", "0123456789abcdef 0123456789", 0o600), "one token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proxyConfig("127.0.0.1:1")
			cfg.HTTPTokenFile = tt.path
			_, err := New(cfg, Options{})
			if err == nil || !strings.Contains(err.Error(), "-http-token-file") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error naming -http-token-file and %q", err, tt.want)
			}
		})
	}
}
