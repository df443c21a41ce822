package examples

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Every example is validated by the real binary, as written, in a network namespace of its own that has the
// example's addresses on a veth "eth0" (the bind address, or an address in the VIP's subnet), so the host
// checks — bind and listen addresses on this host, the VIP's interface, capabilities, arp_ignore — pass or
// fail the same on any machine. Only absolute paths are moved: /etc/vipd, /etc/kubernetes/pki and
// /var/lib/vipd point into a temporary directory that holds a real cluster key and CA certificates.

// The files this test validates: every example, and the configuration the package installs.
func exampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d examples (%v): the test runs in examples/", len(files), files)
	}
	return append(files, filepath.Join("..", "packaging", "vipd.yaml"))
}

func TestExamplesValidate(t *testing.T) {
	vipd := buildVipd(t)
	for _, file := range exampleFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			requireRoot(t)
			cfg := prepare(t, file)
			out, err := cfg.validate(t, vipd, cfg.text)
			if err != nil {
				t.Fatalf("vipd validate -config %s: %v\n%s", file, err, out)
			}
			if !strings.Contains(out, "configuration is valid") {
				t.Fatalf("vipd validate exited 0 without saying the configuration is valid:\n%s", out)
			}
		})
	}
}

// TestExamplesValidateCatchesHostMismatch proves the namespace is not a rubber stamp: the same example with a
// bind address the namespace does not have, or a VIP no interface's subnet holds, must fail.
func TestExamplesValidateCatchesHostMismatch(t *testing.T) {
	requireRoot(t)
	vipd := buildVipd(t)
	cfg := prepare(t, "single-frontend.yaml")
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"bind not on host", "bind: 10.0.0.11", "bind: 10.0.9.11", "-bind"},
		{"VIP outside every subnet", "vip: [10.0.0.50/24]", "vip: [10.0.9.50/24]", "VIP 10.0.9.50/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(cfg.text, tc.from, tc.to, 1)
			if text == cfg.text {
				t.Fatalf("%q is not in single-frontend.yaml any more: update this test", tc.from)
			}
			out, err := cfg.validate(t, vipd, text)
			if err == nil {
				t.Fatalf("vipd validate accepted %s:\n%s", tc.name, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("vipd validate failed without naming %s:\n%s", tc.want, out)
			}
		})
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: each example is validated in a network namespace with its own addresses")
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildVipd builds cmd/vipd once per test binary, as `make build` does (static, no cgo).
func buildVipd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "vipd-examples-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "vipd"), "../cmd/vipd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ../cmd/vipd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "vipd")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// prepared is one example made runnable here: its text with paths moved, the files it names created, and
// the addresses its namespace needs.
type prepared struct {
	text  string
	dir   string
	addrs []netip.Prefix
}

// pathRE matches the absolute paths examples use; prepare moves them under the test's directory.
var pathRE = regexp.MustCompile(`(/etc/vipd|/etc/kubernetes/pki|/var/lib/vipd)(/[^\s"',}\]]*)?`)

func prepare(t *testing.T, file string) *prepared {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := &prepared{dir: t.TempDir()}
	var settings struct {
		Bind string   `yaml:"bind"`
		VIP  []string `yaml:"vip"`
	}
	if err := yaml.Unmarshal(raw, &settings); err != nil {
		t.Fatalf("%s is not YAML: %v", file, err)
	}
	var lines []string
	for _, line := range strings.Split(string(raw), "\n") {
		// Paths in comments stay as they are and need no file: only the part before '#' is rewritten.
		code, comment, _ := strings.Cut(line, "#")
		code = pathRE.ReplaceAllStringFunc(code, func(path string) string {
			moved := filepath.Join(p.dir, path)
			p.create(t, path, moved)
			return moved
		})
		if strings.Contains(line, "#") {
			code += "#" + comment
		}
		lines = append(lines, code)
	}
	p.text = strings.Join(lines, "\n")
	p.addrs = hostAddrs(t, file, settings.Bind, settings.VIP)
	return p
}

// create makes the file an example names: a cluster key, a CA certificate, or for the data directory only
// its parent (the agent creates the directory itself).
func (p *prepared) create(t *testing.T, path, moved string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(moved), 0o700); err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(path, "/var/lib/vipd"):
	case strings.HasSuffix(path, ".key"):
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		writeFile(t, moved, base64.StdEncoding.EncodeToString(key)+"\n", 0o600)
	case strings.HasSuffix(path, ".crt"), strings.HasSuffix(path, ".pem"):
		writeFile(t, moved, testCA(t), 0o644)
	default:
		t.Fatalf("example names %s: teach prepare what file that is", path)
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// hostAddrs is what the namespace's eth0 carries: the bind address in the VIP's subnet, or, without -bind,
// the first address of each VIP's subnet.
func hostAddrs(t *testing.T, file, bind string, vips []string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	var vipPrefixes []netip.Prefix
	for _, v := range vips {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			t.Fatalf("%s: vip %q: %v", file, v, err)
		}
		vipPrefixes = append(vipPrefixes, p)
	}
	if bind != "" {
		ip, err := netip.ParseAddr(bind)
		if err != nil {
			t.Fatalf("%s: bind %q: %v", file, bind, err)
		}
		bits := 24
		if ip.Is6() {
			bits = 64
		}
		for _, v := range vipPrefixes {
			if v.Addr().Is4() == ip.Is4() {
				bits = v.Bits()
			}
		}
		out = append(out, netip.PrefixFrom(ip, bits))
	}
	for _, v := range vipPrefixes {
		covered := false
		for _, a := range out {
			covered = covered || a.Masked().Contains(v.Addr())
		}
		if !covered {
			out = append(out, netip.PrefixFrom(v.Masked().Addr().Next(), v.Bits()))
		}
	}
	return out
}

// validate runs `vipd validate -config` on text in a fresh network namespace that has lo and a veth eth0
// with the example's addresses. It returns the combined output and the exit error.
func (p *prepared) validate(t *testing.T, vipd, text string) (string, error) {
	t.Helper()
	f, err := os.CreateTemp(p.dir, "config-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
	script := []string{"set -e", "ip link set lo up", "ip link add eth0 type veth peer name eth0-peer", "ip link set eth0-peer up"}
	for _, a := range p.addrs {
		extra := ""
		if a.Addr().Is6() {
			extra = " nodad"
		}
		script = append(script, fmt.Sprintf("ip addr add %s dev eth0%s", a, extra))
	}
	script = append(script, "ip link set eth0 up", `exec "$0" validate -config "$1"`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", strings.Join(script, "\n"), vipd, f.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testCA returns a self-signed CA certificate in PEM, as a cluster CA file would hold.
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubernetes"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
