package health

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// Fuzz targets for what the operator gives the health checks: backend addresses (-backend, frontends'
// backends:) and the HTTP check path (-check-path, check.path:). `go test` runs their seeds; `make fuzz`
// explores.

// FuzzValidateAddr: no address panics the validator or gets a message of more than one line; an accepted one
// is what the dialer will parse: a host and a port in 1-65535, as net reads it.
func FuzzValidateAddr(f *testing.F) {
	for _, s := range []string{"10.0.0.21:6443", "[fe80::1%eth0]:6443", "apiserver.example:443", ":6443", "10.0.0.1",
		"10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:+80", "a b:1", "[::1]:1", "[::1:1", "\x00:1", "h:\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		err := ValidateAddr(addr)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("ValidateAddr(%q): message %q is not one line", addr, msg)
			}
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			t.Fatalf("ValidateAddr(%q) accepted an address without host and port: %v", addr, err)
		}
		n, err := net.LookupPort("tcp", port) // numeric: parsed, never looked up
		if err != nil || n < 1 || n > 65535 {
			t.Fatalf("ValidateAddr(%q) accepted port %q, which the dialer reads as %d, %v", addr, port, n, err)
		}
		if a, _ := strconv.Atoi(port); a != n {
			t.Fatalf("ValidateAddr(%q): port %q checked as %d, dialled as %d", addr, port, a, n)
		}
	})
}

// FuzzHTTPCheckRequest: an HTTP check that NewChecker accepts, on a backend address that ValidateAddr accepts,
// can always build its request. Otherwise bad input would pass validation and then fail every check, showing
// as a backend that is down rather than as the setting to fix. The context is cancelled before the check, so
// nothing is ever dialled.
func FuzzHTTPCheckRequest(f *testing.F) {
	for _, s := range []struct{ path, addr string }{
		{"/readyz", "10.0.0.21:6443"},
		{"/healthz?verbose=1", "127.0.0.1:8080"},
		{"/a b", "[::1]:80"},
		{"/%zz", "10.0.0.1:1"},
		{"/ok", "[fe80::1%eth0]:6443"},
		{"//host/x#frag", "apiserver.example:443"},
		{"/\x7f", "h:1"},
	} {
		f.Add(s.path, s.addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, path, addr string) {
		if ValidateAddr(addr) != nil {
			return
		}
		c, err := NewChecker(CheckConfig{Type: CheckHTTP, Path: path})
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("NewChecker(path %q): message %q is not one line", path, msg)
			}
			return
		}
		if err := c.Check(ctx, addr); !errors.Is(err, context.Canceled) {
			t.Fatalf("path %q accepted, backend %q accepted, but the check cannot be sent: %v", path, addr, err)
		}
	})
}
