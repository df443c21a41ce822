package health

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "client")
	_, otherKey := selfSigned(t, dir, "other")
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                string
		ca, cert, key       string
		wantMsg, wantPrefix string
		wantIs              error
	}{
		{name: "missing CA", ca: missing, wantMsg: "CAFile: " + missing + ": no such file", wantIs: fs.ErrNotExist},
		{name: "CA without PEM", ca: garbage, wantMsg: "CAFile: " + garbage + " holds no PEM certificate: give a PEM CA bundle", wantIs: ErrNoCertificate},
		{name: "CA is a key", ca: key, wantMsg: "CAFile: " + key + " holds no PEM certificate: give a PEM CA bundle", wantIs: ErrNoCertificate},
		{name: "cert without key", cert: cert, wantMsg: "KeyFile: CertFile and KeyFile must be set together", wantIs: ErrCertKeyPair},
		{name: "key without cert", key: key, wantMsg: "CertFile: CertFile and KeyFile must be set together", wantIs: ErrCertKeyPair},
		{name: "missing cert", cert: missing, key: key, wantMsg: "CertFile: " + missing + ": no such file", wantIs: fs.ErrNotExist},
		{name: "missing key", cert: cert, key: missing, wantMsg: "KeyFile: " + missing + ": no such file", wantIs: fs.ErrNotExist},
		{name: "key does not match cert", cert: cert, key: otherKey, wantPrefix: "CertFile: " + cert + " with key " + otherKey + ": "},
		{name: "cert is garbage", cert: garbage, key: key, wantPrefix: "CertFile: " + garbage + " with key " + key + ": "},
		{name: "CA is a directory", ca: dir, wantPrefix: "CAFile: read " + dir + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadTLSConfig(tt.ca, tt.cert, tt.key, false)
			if err == nil || cfg != nil {
				t.Fatalf("LoadTLSConfig = %v, %v; want error", cfg, err)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("error %q, want %q", err, tt.wantMsg)
			}
			if tt.wantPrefix != "" && !strings.HasPrefix(err.Error(), tt.wantPrefix) {
				t.Errorf("error %q, want prefix %q", err, tt.wantPrefix)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestLoadTLSConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "client")
	ca, _ := selfSigned(t, dir, "ca")

	cfg, err := LoadTLSConfig("", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("default config: %+v", cfg)
	}

	cfg, err = LoadTLSConfig(ca, cert, key, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || !cfg.InsecureSkipVerify {
		t.Fatalf("full config: RootCAs %v, %d certificates, insecure %v", cfg.RootCAs, len(cfg.Certificates), cfg.InsecureSkipVerify)
	}
}
