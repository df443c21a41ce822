package health

import (
	"errors"
	"testing"
)

func TestNewChecker(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "client")
	tests := []struct {
		name string
		cfg  CheckConfig
		want string // "" = valid
	}{
		{"tcp", CheckConfig{Type: CheckTCP}, ""},
		{"http", CheckConfig{Type: CheckHTTP, Path: "/readyz"}, ""},
		{"https with client cert", CheckConfig{Type: CheckHTTPS, Path: "/readyz", CertFile: cert, KeyFile: key}, ""},
		{"unknown type", CheckConfig{Type: "udp"}, `Type: "udp" is not one of tcp, http, https`},
		{"empty type", CheckConfig{}, `Type: "" is not one of tcp, http, https`},
		{"path without slash", CheckConfig{Type: CheckHTTP, Path: "readyz"}, `Path: must start with /, got "readyz": use e.g. /readyz`},
		{"tls on tcp", CheckConfig{Type: CheckTCP, InsecureSkipVerify: true},
			"Type: TLS options (CAFile, CertFile, KeyFile, InsecureSkipVerify) need https, got tcp"},
		{"tls on http", CheckConfig{Type: CheckHTTP, Path: "/", CAFile: cert},
			"Type: TLS options (CAFile, CertFile, KeyFile, InsecureSkipVerify) need https, got http"},
		{"cert without key", CheckConfig{Type: CheckHTTPS, Path: "/", CertFile: cert}, "KeyFile: CertFile and KeyFile must be set together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewChecker(tt.cfg)
			if tt.want == "" {
				if err != nil || c == nil {
					t.Fatalf("NewChecker = %v, %v; want a checker", c, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewChecker = %v; want error %q", c, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}
