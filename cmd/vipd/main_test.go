package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

func TestBadInputExitsTwoNamingTheFlag(t *testing.T) {
	dir := t.TempDir()
	emptyCA := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(emptyCA, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("listen: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownKey := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknownKey, []byte("backend: [127.0.0.1:1]\nbackends: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"agent", "-http-addr", "127.0.0.1:0", "-listen", "127.0.0.1:0"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"agent", "-nope"}, "-nope"},
		{"no backend", base, "-backend"},
		{"malformed backend", append(base, "-backend", "10.0.0.1"), "-backend"},
		{"port out of range", append(base, "-backend", "10.0.0.1:70000"), "out of range"},
		{"signed backend port", append(base, "-backend", "10.0.0.1:+6443"), `-backend: port "+6443" in "10.0.0.1:+6443" is not a number`},
		{"signed listen port", []string{"agent", "-http-addr", "127.0.0.1:0", "-listen", ":+6443", "-backend", "10.0.0.1:6443"}, `-listen: port "+6443" in ":+6443" is not a number`},
		{"duplicate backend", append(base, "-backend", "10.0.0.1:6443,10.0.0.1:6443"), "listed twice"},
		{"negative timeout", append(base, "-backend", "10.0.0.1:6443", "-dial-timeout", "-1s"), "-dial-timeout"},
		{"rise zero", append(base, "-backend", "10.0.0.1:6443", "-rise", "0"), "-rise"},
		{"fall zero", append(base, "-backend", "10.0.0.1:6443", "-fall", "0"), "-fall"},
		{"bad check", append(base, "-backend", "10.0.0.1:6443", "-check", "icmp"), "-check"},
		{"missing CA file", append(base, "-backend", "10.0.0.1:6443", "-check", "https", "-check-ca-file", filepath.Join(dir, "nope.pem")), "-check-ca-file"},
		{"CA file without cert", append(base, "-backend", "10.0.0.1:6443", "-check", "https", "-check-ca-file", emptyCA), "-check-ca-file"},
		{"unreadable config", append(base, "-config", filepath.Join(dir, "missing.yaml")), "-config"},
		{"malformed config", append(base, "-config", badYAML), "-config"},
		{"unknown config key", append(base, "-config", unknownKey), "backends"},
		{"bad listen", []string{"agent", "-listen", "6443", "-backend", "10.0.0.1:6443"}, "-listen"},
		{"bad encrypt", append(base, "-backend", "10.0.0.1:6443", "-dev", "-encrypt", "c2hvcnQ="), "-encrypt"},
		{"vip without cluster", append(base, "-backend", "10.0.0.1:6443", "-vip", "10.0.0.50/24"), "-vip"},
		{"vip without prefix", append(base, "-backend", "10.0.0.1:6443", "-dev", "-vip", "10.0.0.50"), "-vip"},
		{"lease above heartbeat", append(base, "-backend", "10.0.0.1:6443", "-dev", "-raft-heartbeat", "100ms", "-raft-lease", "200ms"), "-raft-lease"},
		{"join without bind", append(base, "-backend", "10.0.0.1:6443", "-join", "10.0.0.2", "-data-dir", dir), "-bind"},
		{"stray argument", append(base, "extra"), "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(tt.args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr.String())
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("want one line, got:\n%s", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not mention %q", msg, tt.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("bad input took %s to reject: it must fail before starting anything", time.Since(start))
			}
		})
	}
}

func TestHelpDocumentsEveryFlagWithDefaults(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"agent", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"-listen", "(default \":6443\")", "-backend", "-check-interval", "(default 2s)", "-rise", "(default 2)", "-fall", "(default 3)", "-http-addr", "127.0.0.1:7948", "-join", "-vip", "-raft-lease", "-witness"} {
		if !strings.Contains(out, want) {
			t.Errorf("vipd agent -h lacks %q", want)
		}
	}
	stdout.Reset()
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "vipd agent") {
		t.Errorf("vipd -h: exit %d, output %q", code, stdout.String())
	}
}

func TestFlagsWinOverConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vipd.yaml")
	yaml := "listen: \":7000\"\nbackend: [10.0.0.1:6443, 10.0.0.2:6443]\nrise: 5\ncheck-interval: 3s\nbalance: least-conn\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseAgentConfig([]string{"-config", file, "--rise", "4", "-backend", "10.0.0.9:6443"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":7000" || cfg.CheckInterval != 3*time.Second || cfg.Balance != "least-conn" {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.Rise != 4 {
		t.Errorf("rise = %d, want the flag's 4", cfg.Rise)
	}
	if len(cfg.Backends) != 1 || cfg.Backends[0] != "10.0.0.9:6443" {
		t.Errorf("backends = %v, want the flag's list to replace the file's", cfg.Backends)
	}
	if cfg.Fall != 3 {
		t.Errorf("fall = %d, want default 3", cfg.Fall)
	}
}

func TestBackendTakesRepeatsAndCommaLists(t *testing.T) {
	cfg, err := parseAgentConfig([]string{"-backend", "10.0.0.1:6443,10.0.0.2:6443", "-backend", "10.0.0.3:6443"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Backends, " "); got != "10.0.0.1:6443 10.0.0.2:6443 10.0.0.3:6443" {
		t.Errorf("backends = %q", got)
	}
}

func TestUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"frobnicate"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if code := run([]string{"members", "-format", "xml"}, &stdout, &stderr); code != 2 {
		t.Errorf("members -format xml: exit %d, want 2", code)
	}
	if code := run([]string{"force-leave"}, &stdout, &stderr); code != 2 {
		t.Errorf("force-leave without a node: exit %d, want 2", code)
	}
}

// TestValidate: `vipd validate` passes what the agent would start, and refuses, with exit 2 and one line, each
// input that used to fail only after the agent listened (or never).
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	multi := filepath.Join(dir, "multi.yaml")
	yaml := `
frontends:
  - name: apiserver
    listen: ":6443"
    backends: [10.0.0.21:6443, {addr: 10.0.0.22:6443, weight: 2}]
    check: {type: https, path: /readyz, insecure-skip-verify: true}
  - name: rke2
    listen: ":9345"
    backends: [10.0.0.21:9345]
`
	if err := os.WriteFile(multi, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"validate", "-http-addr", "127.0.0.1:7948", "-backend", "10.0.0.1:6443"}
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"proxy alone", base, 0, "frontend default: listen :6443, 1 backends"},
		{"two frontends", []string{"validate", "-config", multi}, 0, "frontend rke2: listen :9345, 1 backends"},
		{"frontends plus -backend", []string{"validate", "-config", multi, "-backend", "10.0.0.1:6443"}, 2, "-backend: given together with frontends"},
		{"backend is our own listener", []string{"validate", "-backend", "127.0.0.1:6443"}, 2, "-backend: 127.0.0.1:6443 is this agent's own -listen"},
		{"listen on the admin port", append(base, "-listen", ":7948"), 2, "both use port 7948"},
		{"data-dir is a file", append(base, "-node", "lb1", "-bind", "127.0.0.1", "-bootstrap-expect", "3", "-data-dir", file, "-insecure"), 2, "-data-dir: " + file + " is a file"},
		{"bind not on this host", append(base, "-node", "lb1", "-bind", "203.0.113.9", "-bootstrap-expect", "3", "-data-dir", dir, "-insecure"), 2, "-bind: 203.0.113.9 is not an address of this host"},
		{"listen on the raft port", append(base, "-dev", "-listen", ":7947"), 2, "-raft-port and -listen both use port 7947"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tt.code || !strings.Contains(out, tt.contains) {
				t.Fatalf("vipd %s: exit %d, output %q; want exit %d and %q", strings.Join(tt.args, " "), code, out, tt.code, tt.contains)
			}
			if code == 2 && strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("want one line on stderr, got %q", stderr.String())
			}
		})
	}
}

// TestHooksTakeAStringOrAList: a hook in the config file is a shell command (a string) or an argv list (run
// without a shell, for the FROM scratch image); the flag takes the shell form and wins over the file.
func TestHooksTakeAStringOrAList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vipd.yaml")
	yaml := "backend: [10.0.0.1:6443]\non-acquire: [/hooks/notify, acquired]\non-release: echo released\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseAgentConfig([]string{"-config", file}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.OnAcquire.Argv, " "); got != "/hooks/notify acquired" || cfg.OnAcquire.Shell != "" {
		t.Errorf("on-acquire list = %+v", cfg.OnAcquire)
	}
	if cfg.OnRelease.Shell != "echo released" || cfg.OnRelease.Argv != nil {
		t.Errorf("on-release string = %+v", cfg.OnRelease)
	}
	cfg, err = parseAgentConfig([]string{"-config", file, "-on-acquire", "logger took it"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OnAcquire.Shell != "logger took it" || cfg.OnAcquire.Argv != nil {
		t.Errorf("the flag did not replace the file's list: %+v", cfg.OnAcquire)
	}
}

// TestClusterNeedsSecurity: a cluster agent refuses to start without a key, certificates or -insecure, and
// refuses -insecure beside a key; both before anything listens.
func TestClusterNeedsSecurity(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(key, []byte("c2l4dGVlbi1ieXRlcy1rZXkxMjM0NTY3ODkwYWJjZGU=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, []byte("c2l4dGVlbi1ieXRlcy1rZXkxMjM0NTY3ODkwYWJjZGU=\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"validate", "-backend", "10.0.0.1:6443", "-node", "lb1", "-bind", "127.0.0.1", "-bootstrap-expect", "3", "-data-dir", dir}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"nothing", base, 2, "-encrypt-file: no cluster security configured"},
		{"a key", append(base, "-encrypt-file", key), 0, "configuration is valid"},
		{"-insecure", append(base, "-insecure"), 0, "configuration is valid"},
		{"-insecure and a key", append(base, "-insecure", "-encrypt-file", key), 2, "-insecure: given together with a cluster key"},
		{"a world-readable key", append(base, "-encrypt-file", open), 2, "-encrypt-file"},
		{"a missing key", append(base, "-encrypt-file", filepath.Join(dir, "nope")), 2, "-encrypt-file"},
		{"half of TLS", append(base, "-tls-ca-file", key), 2, "-tls-cert-file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if out := stdout.String() + stderr.String(); code != tt.code || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, output %q; want exit %d and %q", code, out, tt.code, tt.want)
			}
		})
	}
}

// TestTLSCreateAndKeyring: vipd tls makes a CA and a node certificate the agent accepts; vipd keyring talks to
// a running -dev agent (which made a throw-away key) and rotates to a new key.
func TestTLSCreateAndKeyring(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	for _, args := range [][]string{
		{"tls", "ca", "create", "-dir", dir},
		{"tls", "cert", "create", "-dir", dir, "-node", "lb1", "-ca", filepath.Join(dir, "vipd-ca.pem"), "-ca-key", filepath.Join(dir, "vipd-ca-key.pem"), "-ip", "127.0.0.1"},
	} {
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("vipd %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "lb1-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node key: %v, mode %v", err, fi.Mode())
	}
	if code := run([]string{"tls", "cert", "create", "-dir", dir, "-node", "lb1", "-ca", filepath.Join(dir, "vipd-ca.pem"), "-ca-key", filepath.Join(dir, "vipd-ca-key.pem")}, &out, &errOut); code != 2 {
		t.Errorf("overwriting a node key: exit %d, want 2", code)
	}
	out.Reset()
	validate := []string{"validate", "-backend", "10.0.0.1:6443", "-node", "lb1", "-bind", "127.0.0.1", "-bootstrap-expect", "3",
		"-data-dir", filepath.Join(dir, "data"), "-tls-ca-file", filepath.Join(dir, "vipd-ca.pem"),
		"-tls-cert-file", filepath.Join(dir, "lb1.pem"), "-tls-key-file", filepath.Join(dir, "lb1-key.pem")}
	if code := run(validate, &out, &errOut); code != 0 || !strings.Contains(out.String(), "security: mtls") {
		t.Fatalf("vipd validate with the new certificate: exit %d, %s %s", code, out.String(), errOut.String())
	}

	admin := freeAddr(t)
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"agent", "-dev", "-node", "lb1", "-nice", "0", "-http-addr", admin, "-listen", freeAddr(t),
			"-backend", "127.0.0.1:1", "-gossip-port", port(t), "-raft-port", port(t)}, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-done
	})
	key := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	testutil.WaitFor(t, 10*time.Second, "the dev agent to lead", func() bool {
		out.Reset()
		return run([]string{"status", "-http-addr", admin}, &out, io.Discard) == 0 && regexp.MustCompile(`Role:\s+leader`).MatchString(out.String())
	})
	for _, args := range [][]string{{"keyring", "-install", key}, {"keyring", "-use", key}} {
		errOut.Reset()
		if code := run(append(args, "-http-addr", admin), &out, &errOut); code != 0 {
			t.Fatalf("vipd %s: exit %d: %s", args[1], code, errOut.String())
		}
	}
	errOut.Reset()
	if code := run([]string{"keyring", "-remove", key, "-http-addr", admin}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "primary") {
		t.Errorf("removing the primary key: exit %d, %q; want a refusal naming the primary", code, errOut.String())
	}
	testutil.WaitFor(t, 5*time.Second, "two keys, the new one primary on the node", func() bool {
		out.Reset()
		run([]string{"keyring", "-list", "-http-addr", admin}, &out, io.Discard)
		return strings.Count(out.String(), "1/1") == 3 // both installed on 1/1, one primary on 1/1
	})
	if code := run([]string{"keyring", "-install", "not-base64!", "-http-addr", admin}, &out, &errOut); code == 0 {
		t.Error("installing a malformed key succeeded")
	}
}

func port(t *testing.T) string {
	t.Helper()
	a := freeAddr(t)
	_, p, _ := net.SplitHostPort(a)
	return p
}
