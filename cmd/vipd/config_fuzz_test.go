package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vipd/vipd/agent"
)

// Fuzz targets for what the CLI parses: the agent's -config YAML and flags (through `vipd validate`, which
// is parseAgentConfig then agent.New with Options{DryRun: true}, exactly what `vipd agent` runs before it
// listens), and the admin API's answers that `vipd members` renders (names that came over the network).
// `go test` runs their seeds; `make fuzz` explores.

// unsafePath reports input that could make a fuzzed config read a device or a kernel file without end
// (-config /dev/zero, check-ca-file: /proc/kcore): the operator's own foot, not a parser's bug, and no
// place for a fuzzer to wander.
func unsafePath(s string) bool {
	return strings.Contains(s, "/dev") || strings.Contains(s, "/proc") || strings.Contains(s, "/sys")
}

// FuzzValidateConfig: no -config file and no flags make `vipd validate` panic or fail any other way than
// exit 2 with one line on stderr; what it accepts, it says is valid.
func FuzzValidateConfig(f *testing.F) {
	for _, seed := range []struct{ yaml, flags string }{
		{"listen: \":6443\"\nbackend: [10.0.0.21:6443, 10.0.0.22:6443]\ncheck-interval: 2s\n", ""},
		{"backend: [127.0.0.1:8080]\nhttp-addr: 127.0.0.1:7948\n", "-listen\n127.0.0.1:0"},
		{`frontends:
  - name: apiserver
    listen: ":6443"
    backends: [10.0.0.21:6443, {addr: 10.0.0.22:6443, weight: 2}]
    check: {type: https, path: /readyz, insecure-skip-verify: true, interval: 1s, rise: 2}
  - name: rke2
    listen: "127.0.0.1:9345"
    min-healthy: 0
    backends: [10.0.0.21:9345]
`, ""},
		{"backend: [10.0.0.1:6443]\ndev: true\nvip: [10.0.0.50/24]\ninterface: lo\non-acquire: [/bin/true, x]\n", ""},
		{"backend: 10.0.0.1:6443\nnode: lb1\nbind: 127.0.0.1\nbootstrap-expect: 3\njoin: [127.0.0.2]\ninsecure: true\n", "-data-dir\nrel/dir"},
		{"backend: [10.0.0.1:6443]\nencrypt: c2hvcnQ=\ndev: true\nraft-heartbeat: 100ms\nraft-lease: 200ms\n", ""},
		{"backend: [10.0.0.1:6443]\nnice: -21\nlog-level: loud\n", "-balance\nleast-conn"},
		{"backend: [10.0.0.1:6443]\nhttp-token-file: token\nhttp-addr: 0.0.0.0:7948\n", ""},
		{"listen: [unclosed\n", ""},
		{"a: &a [*a, *a]\nbackend: *a\n", ""},
		{"backend: [\"[fe80::1%eth0]:6443\"]\ncheck: http\ncheck-path: \"/%zz\"\n", ""},
		{"", "-backend\n10.0.0.1:6443\n-h"},
	} {
		f.Add([]byte(seed.yaml), seed.flags)
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, yaml []byte, flags string) {
		if unsafePath(string(yaml)) || unsafePath(flags) {
			t.Skip()
		}
		file := filepath.Join(t.TempDir(), "vipd.yaml")
		if err := os.WriteFile(file, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"validate", "-config", file}
		for _, a := range strings.Split(flags, "\n") {
			if a != "" {
				args = append(args, a)
			}
		}
		t.Chdir(dir) // relative paths in the input (a token file, a data dir) resolve there, not in the source tree
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		switch code {
		case 0:
			if out := stdout.String(); !strings.HasPrefix(out, "configuration is valid") && !strings.HasPrefix(out, "Usage:") {
				t.Fatalf("exit 0 without saying the configuration is valid: %q", out)
			}
		case 2:
			msg := strings.TrimSuffix(stderr.String(), "\n")
			if msg == "" || strings.Contains(msg, "\n") || !utf8.ValidString(msg) {
				t.Fatalf("exit 2 must come with one line of valid text, got %q", stderr.String())
			}
		default:
			t.Fatalf("exit %d, want 0 or 2; stderr: %q", code, stderr.String())
		}
	})
}

// FuzzMembersTable: whatever the admin API answers (gossiped names, versions, a rogue's metadata), `vipd
// members` never writes a control character (a terminal escape) or invalid UTF-8 to the operator's terminal.
func FuzzMembersTable(f *testing.F) {
	f.Add([]byte(`{"self":"lb1","leader":"lb1","vip_holder":"lb1","members":[{"name":"lb1","addr":"10.0.0.11:7946","status":"alive","role":"leader","leader":true,"healthy":true,"listener_up":true,"healthy_backends":3,"total_backends":3,"vip_held":true,"version":"v1.0.0","security":"key"}]}`))
	f.Add([]byte(`{"members":[{"name":"\u001b[31mevil","addr":"\u001b]0;x\u0007","status":"\u001b[2J","role":"\u009b1m","version":"\r","security":"\u0000"}],"note":"\u001b[5m"}`))
	f.Add([]byte(`{"members":[{"name":"lb2","status":"dead","role":"follower","security":"insecure","witness":true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp agent.MembersResponse
		if json.Unmarshal(b, &resp) != nil {
			return
		}
		var out bytes.Buffer
		writeMembersTable(&out, resp)
		checkTerminalSafe(t, out.String())
	})
}

// FuzzStatusTable: the same for `vipd status`, whose leader name is whatever the leader's Raft RPCs claimed
// (in an -insecure cluster, any stranger's).
func FuzzStatusTable(f *testing.F) {
	f.Add([]byte(`{"node":"lb1","cluster":true,"cluster_id":"00ff","role":"leader","term":2,"leader":"lb1","leader_addr":"10.0.0.11:7947","voters":3,"vips":["10.0.0.50/24"],"vip_held":true,"healthy":true,"version":"v1","security":"key","refused":3}`))
	f.Add([]byte(`{"leader":"intruder\u001b]0;pwned\u0007","leader_addr":"\u001b[2J","role":"\u009b","vips":["\r"],"health_reason":"\u001b[5m","problem":"a \"name\" \u00e9\u0000","version":"\u007f"}`))
	f.Add([]byte(`{"problem":"\ud800"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st agent.StatusResponse
		if json.Unmarshal(b, &st) != nil {
			return
		}
		var out bytes.Buffer
		if err := writeStatus(&out, st); err != nil {
			t.Fatal(err)
		}
		checkTerminalSafe(t, out.String())
	})
}

// checkTerminalSafe fails t if s holds anything but printable text, spaces and newlines.
func checkTerminalSafe(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("invalid UTF-8 written to the terminal: %q", s)
	}
	for _, r := range s {
		if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f)) {
			t.Fatalf("control character %U written to the terminal: %q", r, s)
		}
	}
}
