package agent

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vipd/vipd/cluster"
)

// Fuzz targets for the settings the agent parses itself: listening addresses, the -encrypt key, the
// -http-token-file, and the `frontends:` section of the -config file. `go test` runs their seeds; `make
// fuzz` explores. (The whole -config file and every flag go through `vipd validate` in cmd/vipd.)

// oneLine fails t unless err is a configuration error of one line.
func oneLine(t *testing.T, input string, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("%q: error %v is not ErrInvalid", input, err)
	}
	if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("%q: message %q is not one line", input, msg)
	}
}

// FuzzValidateListen: no -listen or -http-addr value panics the checks (the syntax check, then the host
// check that New runs); an accepted one is host:port with a port the kernel can bind.
func FuzzValidateListen(f *testing.F) {
	for _, s := range []string{":6443", "127.0.0.1:7948", "[::1]:0", "localhost:1", "6443", ":65536", "a b:1", "[fe80::1%eth0]:1",
		"host.example:80", ":+1", "\x00:1", "[::1]:"} {
		f.Add(s)
	}
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.11")}
	f.Fuzz(func(t *testing.T, v string) {
		if err := validateListen("listen", v); err != nil {
			oneLine(t, v, err)
			return
		}
		_, port, err := net.SplitHostPort(v)
		if err != nil {
			t.Fatalf("validateListen(%q) accepted what is not host:port: %v", v, err)
		}
		if n, err := net.LookupPort("tcp", port); err != nil || n < 0 || n > 65535 {
			t.Fatalf("validateListen(%q) accepted port %q, which net reads as %d, %v", v, port, n, err)
		}
		e, err := parseEndpoint("-listen", v)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("parseEndpoint(%q): message %q is not one line", v, err)
			}
			return
		}
		_ = onHost(e.ip, local)
	})
}

// FuzzDecodeKey: -encrypt never panics the decoder, and a key it accepts is one the cluster accepts from a
// key file, byte for byte (the same key must not work as a flag and fail as -encrypt-file, or the reverse
// way round).
func FuzzDecodeKey(f *testing.F) {
	for _, s := range []string{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAECAwQFBgcICQoLDA0ODw==", "c2hvcnQ=", "",
		"AAECAwQFBgcICQoLDA0O\nDxAREhMUFRYXGBkaGxwdHh8=", " AAECAwQFBgcICQoLDA0ODw=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := DecodeKey(s)
		if err != nil {
			oneLine(t, s, err)
			return
		}
		if l := len(k); l != 16 && l != 24 && l != 32 {
			t.Fatalf("DecodeKey(%q) accepted a %d-byte key", s, l)
		}
		if kf, err := cluster.ParseKey(s); err != nil || !bytes.Equal(kf, k) {
			t.Fatalf("DecodeKey(%q) accepts what a key file refuses or reads otherwise: %v", s, err)
		}
	})
}

// FuzzTokenFile: no -http-token-file content panics the reader; an accepted token is the file's one line,
// at least 16 characters, without blanks.
func FuzzTokenFile(f *testing.F) {
	for _, s := range []string{"0123456789abcdef0123\n", "short\n", "two words here, long enough\n", "\n\n", "tok\x00en-with-a-nul-inside", "  padded-token-0123456789  \r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		tok, err := readTokenFile(path)
		if err != nil {
			oneLine(t, string(b), err)
			return
		}
		if tok != strings.TrimSpace(string(b)) || len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n") {
			t.Fatalf("token file %q read as %q", b, tok)
		}
	})
}

// FuzzFrontends: no `frontends:` section panics the agent's build of its frontends (names, listeners,
// backends and weights, per-frontend checks, the host checks New runs); what New accepts has unique, valid
// names and listeners, and it can describe itself (vipd validate's summary).
func FuzzFrontends(f *testing.F) {
	for _, s := range []string{
		`frontends:
  - name: apiserver
    listen: ":6443"
    backends: [10.0.0.21:6443, {addr: 10.0.0.22:6443, weight: 2}]
    check: {type: https, path: /readyz, insecure-skip-verify: true}
  - name: rke2
    listen: "127.0.0.1:9345"
    min-healthy: 0
    balance: least-conn
    backends: [10.0.0.21:9345]
`,
		"frontends: [{name: a, listen: ':1', backends: ['[::1]:2']}, {name: a, listen: ':3', backends: [x:1]}]\n",
		"frontends: [{name: Bad_Name, listen: ':1', backends: [h:1]}]\n",
		"frontends: [{name: w, listen: ':1', backends: [{addr: h:1, weight: 300}]}]\n",
		"frontends: [{name: c, listen: ':1', backends: [h:1], check: {type: http, path: '/%zz', interval: -1s, rise: 0}}]\n",
		"frontends: [{name: l, listen: '7948', backends: [h:1]}]\n",
		"frontends: [{name: m, listen: ':1', min-healthy: 5, backends: [h:1]}]\n",
		"frontends: [{name: o, listen: ':7948', backends: ['127.0.0.1:7948']}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Contains(b, []byte("/dev")) || bytes.Contains(b, []byte("/proc")) || bytes.Contains(b, []byte("/sys")) {
			t.Skip() // a CA "file" that is a device or a kernel file: the operator's own foot, no parser's
		}
		var doc struct {
			Frontends []FrontendConfig `yaml:"frontends"`
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if dec.Decode(&doc) != nil {
			return
		}
		cfg := Default()
		cfg.Frontends = doc.Frontends
		cfg.HTTPAddr = "127.0.0.1:7948"
		a, err := New(cfg, Options{DryRun: true})
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("message %q is not one line", msg)
			}
			return
		}
		seen := map[string]bool{}
		for _, fe := range a.frontendList() {
			if !frontendName.MatchString(fe.spec.name) || seen[fe.spec.name] {
				t.Fatalf("accepted frontend name %q (names so far %v)", fe.spec.name, seen)
			}
			seen[fe.spec.name] = true
			if err := validateListen("listen", fe.spec.listen); err != nil {
				t.Fatalf("accepted listener %q: %v", fe.spec.listen, err)
			}
			if _, err := strconv.Atoi(fe.spec.listen[strings.LastIndex(fe.spec.listen, ":")+1:]); err != nil {
				t.Fatalf("accepted listener %q without a numeric port", fe.spec.listen)
			}
		}
		_ = a.Summary()
	})
}
