package packaging

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The package test runs on packages `make package` built: `make test-package` sets VIPD_PKG_DIR. It asserts
// both packages' contents, modes, conffile and scripts, verifies the unit with systemd-analyze, then installs
// the .deb on this machine, checks what postinst did, runs the installed `vipd validate` on the shipped
// configuration and purges the package, leaving the machine as it found it. dpkg runs in a network namespace
// of its own, so the ARP sysctls postinst applies land there and not on this host.

// packaged is what both packages must contain: path, mode, and the repository file it must equal ("" for
// none). Ownership is root:root in the archive; postinst gives /etc/vipd and vipd.yaml to group vipd.
var packaged = []struct {
	path string
	mode os.FileMode
	src  string
}{
	{"/usr/bin/vipd", 0o755, ""},
	{"/usr/lib/systemd/system/vipd.service", 0o644, "vipd.service"},
	{"/usr/lib/sysctl.d/60-vipd.conf", 0o644, "60-vipd.conf"},
	{"/etc/vipd", os.ModeDir | 0o750, ""},
	{"/etc/vipd/vipd.yaml", 0o640, "vipd.yaml"},
	{"/usr/share/doc/vipd/README.md", 0o644, "../README.md"},
	{"/usr/share/doc/vipd/docs/kubeadm.md", 0o644, "../docs/kubeadm.md"},
	{"/usr/share/doc/vipd/docs/operations.md", 0o644, "../docs/operations.md"},
	{"/usr/share/doc/vipd/docs/upgrade.md", 0o644, "../docs/upgrade.md"},
	{"/usr/share/doc/vipd/docs/troubleshooting.md", 0o644, "../docs/troubleshooting.md"},
	{"/usr/share/doc/vipd/docs/monitoring.md", 0o644, "../docs/monitoring.md"},
	{"/usr/share/doc/vipd/docs/monitoring/vipd-alerts.yaml", 0o644, "../docs/monitoring/vipd-alerts.yaml"},
	{"/usr/share/doc/vipd/docs/monitoring/vipd-dashboard.json", 0o644, "../docs/monitoring/vipd-dashboard.json"},
	{"/usr/share/doc/vipd/examples/single-frontend.yaml", 0o644, "../examples/single-frontend.yaml"},
	{"/usr/share/doc/vipd/examples/rke2.yaml", 0o644, "../examples/rke2.yaml"},
	{"/usr/share/doc/vipd/examples/witness.yaml", 0o644, "../examples/witness.yaml"},
	{"/usr/share/doc/vipd/examples/ipv6.yaml", 0o644, "../examples/ipv6.yaml"},
}

// scripts maps each maintainer script to its source.
var scripts = map[string]string{
	"postinst": "scripts/postinst.sh",
	"prerm":    "scripts/prerm.sh",
	"postrm":   "scripts/postrm.sh",
}

func pkgDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VIPD_PKG_DIR")
	if dir == "" {
		t.Skip("no packages to test: run make test-package (it builds them and sets VIPD_PKG_DIR)")
	}
	return dir
}

func onePackage(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("want exactly one %s in %s, found %v (%v)", pattern, dir, m, err)
	}
	return m[0]
}

// run runs a command with a deadline and returns its combined output; it fails the test on a non-zero exit.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: .ci/run installs it (apt-get install dpkg rpm systemd)", tool)
		}
	}
}

func TestPackageDebContents(t *testing.T) {
	deb := onePackage(t, pkgDir(t), "vipd_*.deb")
	need(t, "dpkg-deb")
	fi, _ := os.Stat(deb)
	t.Logf("%s: %d bytes", filepath.Base(deb), fi.Size())

	// dpkg-deb -c: "-rwxr-xr-x root/root 13881506 2026-11-30 04:47 ./usr/bin/vipd"
	listing := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb -c line %q", line)
		}
		path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		listing[path] = f[0] + " " + f[1]
	}
	for _, want := range packaged {
		got, ok := listing[want.path]
		if !ok {
			t.Errorf("%s is not in the .deb", want.path)
			continue
		}
		if got != debMode(want.mode)+" root/root" {
			t.Errorf("%s: %s, want %s root/root", want.path, got, debMode(want.mode))
		}
	}

	control := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, control)
	if got := strings.TrimSpace(readFile(t, filepath.Join(control, "conffiles"))); got != "/etc/vipd/vipd.yaml" {
		t.Errorf("conffiles = %q, want /etc/vipd/vipd.yaml only", got)
	}
	for script, src := range scripts {
		p := filepath.Join(control, script)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("the .deb has no %s: %v", script, err)
			continue
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v", script, fi.Mode())
		}
		if readFile(t, p) != readFile(t, src) {
			t.Errorf("%s differs from packaging/%s", script, src)
		}
	}
	fields := run(t, "dpkg-deb", "-f", deb, "Package", "Architecture", "Depends")
	for _, want := range []string{"Package: vipd", "Depends: passwd"} {
		if !strings.Contains(fields, want) {
			t.Errorf("control fields lack %q:\n%s", want, fields)
		}
	}

	// Every file the package installs from the repository is the repository's file, and the binary is static.
	tree := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, tree)
	for _, want := range packaged {
		if want.src != "" && readFile(t, filepath.Join(tree, want.path)) != readFile(t, want.src) {
			t.Errorf("%s differs from packaging/%s", want.path, want.src)
		}
	}
	assertStatic(t, filepath.Join(tree, "usr/bin/vipd"))
	if out := run(t, filepath.Join(tree, "usr/bin/vipd"), "version"); !strings.HasPrefix(out, "vipd ") || !strings.Contains(out, "commit ") {
		t.Errorf("packaged vipd version = %q, want version, commit and Go version", out)
	}
}

// debMode renders a mode as dpkg-deb -c does (drwxr-x--- for a directory).
func debMode(m os.FileMode) string {
	s := m.Perm().String() // -rwxr-x---
	if m.IsDir() {
		s = "d" + s[1:]
	}
	return s
}

func TestPackageRPMContents(t *testing.T) {
	rpmFile := onePackage(t, pkgDir(t), "vipd-*.rpm")
	need(t, "rpm")
	fi, _ := os.Stat(rpmFile)
	t.Logf("%s: %d bytes", filepath.Base(rpmFile), fi.Size())

	// rpm -qlvp: "-rwxr-xr-x    1 root     root     13881506 Nov 30 04:47 /usr/bin/vipd"
	listing := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "rpm", "-qlvp", rpmFile)), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			t.Fatalf("unexpected rpm -qlvp line %q", line)
		}
		listing[f[len(f)-1]] = f[0] + " " + f[2] + "/" + f[3]
	}
	for _, want := range packaged {
		if got := listing[want.path]; got != debMode(want.mode)+" root/root" {
			t.Errorf("%s in the .rpm: %q, want %q", want.path, got, debMode(want.mode)+" root/root")
		}
	}
	if got := strings.TrimSpace(run(t, "rpm", "-qcp", rpmFile)); got != "/etc/vipd/vipd.yaml" {
		t.Errorf("rpm config files = %q, want /etc/vipd/vipd.yaml", got)
	}
	if got := run(t, "rpm", "-qp", "--qf", "%{NAME} %{ARCH}", rpmFile); !strings.HasPrefix(got, "vipd ") {
		t.Errorf("rpm name/arch = %q", got)
	}
	all := run(t, "rpm", "-qp", "--scripts", rpmFile)
	for _, phase := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(all, phase) {
			t.Errorf("the .rpm has no %s", phase)
		}
	}
	for _, src := range scripts {
		// rpm prints each scriptlet's body; every line of ours must be there.
		for _, line := range strings.Split(readFile(t, src), "\n") {
			if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#!") && !strings.Contains(all, line) {
				t.Errorf("the .rpm's scriptlets lack %q of packaging/%s", line, src)
				break
			}
		}
	}
}

// TestPackageInstall installs the .deb here, checks the result, and purges it.
func TestPackageInstall(t *testing.T) {
	deb := onePackage(t, pkgDir(t), "vipd_*.deb")
	if os.Geteuid() != 0 {
		t.Skip("installing the .deb needs root: run make test-package as root")
	}
	need(t, "dpkg", "dpkg-query", "systemd-analyze", "runuser", "getent")
	if out, err := runErr("dpkg-query", "-W", "-f=${Status}", "vipd"); err == nil && strings.Contains(out, "installed") {
		t.Fatalf("vipd is already installed here (%s): this test installs and purges the package, so it leaves an existing installation alone; remove it first (dpkg --purge vipd)", out)
	}
	for _, dir := range []string{"/etc/vipd", "/var/lib/vipd"} {
		if _, err := os.Lstat(dir); err == nil {
			t.Fatalf("%s exists without the package: purging would delete it; move it away first", dir)
		}
	}
	_, userErr := runErr("getent", "passwd", "vipd")
	_, groupErr := runErr("getent", "group", "vipd")
	hadUser, hadGroup := userErr == nil, groupErr == nil

	installed := false
	t.Cleanup(func() {
		if installed {
			if out, err := inNewNetns("dpkg --purge vipd"); err != nil {
				t.Errorf("dpkg --purge vipd: %v\n%s", err, out)
			}
		}
		// Debian leaves system users on purge; this machine had none.
		if !hadUser {
			_, _ = runErr("userdel", "vipd")
		}
		if !hadGroup {
			_, _ = runErr("groupdel", "vipd")
		}
	})

	// dpkg -i in a fresh network namespace: postinst must have applied the ARP sysctls there.
	out, err := inNewNetns(fmt.Sprintf("dpkg -i %q && cat /proc/sys/net/ipv4/conf/all/arp_ignore /proc/sys/net/ipv4/conf/all/arp_announce", deb))
	installed = true
	if err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	t.Logf("dpkg -i:\n%s", out)
	if f := strings.Fields(out); len(f) < 2 || f[len(f)-2] != "1" || f[len(f)-1] != "2" {
		t.Errorf("after postinst, arp_ignore/arp_announce of the namespace are %v, want 1 and 2", f)
	}

	// The user and group, the directories and their modes.
	pw := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "vipd")), ":")
	if len(pw) != 7 {
		t.Fatalf("getent passwd vipd = %v", pw)
	}
	if uid, _ := strconv.Atoi(pw[2]); uid >= 1000 || uid == 0 {
		t.Errorf("vipd has uid %d, want a system user (1-999)", uid)
	}
	if pw[5] != "/var/lib/vipd" || !strings.HasSuffix(pw[6], "nologin") {
		t.Errorf("vipd's home and shell are %s and %s, want /var/lib/vipd and nologin", pw[5], pw[6])
	}
	gid := lookupID(t, "group", "vipd")
	for _, want := range []struct {
		path string
		mode os.FileMode
		gid  int
	}{
		{"/etc/vipd", os.ModeDir | 0o750, gid},
		{"/etc/vipd/vipd.yaml", 0o640, gid},
		{"/usr/bin/vipd", 0o755, 0},
		{"/usr/lib/systemd/system/vipd.service", 0o644, 0},
		{"/usr/lib/sysctl.d/60-vipd.conf", 0o644, 0},
	} {
		fi, err := os.Stat(want.path)
		if err != nil {
			t.Errorf("%s: %v", want.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != want.mode || st.Uid != 0 || int(st.Gid) != want.gid {
			t.Errorf("%s is %v %d:%d, want %v 0:%d", want.path, fi.Mode(), st.Uid, st.Gid, want.mode, want.gid)
		}
	}
	if conf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "vipd"); !strings.Contains(conf, "/etc/vipd/vipd.yaml") {
		t.Errorf("dpkg does not list /etc/vipd/vipd.yaml as a conffile: %q", conf)
	}
	// Installing never enables (nor, without systemd running, could start) the agent.
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/vipd.service"); err == nil {
		t.Error("the package enabled vipd.service")
	}

	// The shipped configuration validates with the installed binary, as root and as the unit's user.
	for _, argv := range [][]string{
		{"/usr/bin/vipd", "validate", "-config", "/etc/vipd/vipd.yaml"},
		{"runuser", "-u", "vipd", "--", "/usr/bin/vipd", "validate", "-config", "/etc/vipd/vipd.yaml"},
	} {
		out := run(t, argv[0], argv[1:]...)
		if !strings.Contains(out, "configuration is valid") {
			t.Errorf("%s: %s", strings.Join(argv, " "), out)
		}
		t.Logf("%s:\n%s", strings.Join(argv, " "), out)
	}

	// systemd-analyze verify on the installed unit (it checks that ExecStart's binary exists, so after install).
	out, err = runErr("systemd-analyze", "verify", "/usr/lib/systemd/system/vipd.service")
	t.Logf("systemd-analyze verify vipd.service: exit %v, output:\n%s", err, out)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify is not clean (exit %v):\n%s", err, out)
	}
	if out, err := runErr("systemd-analyze", "security", "--offline=yes", "/usr/lib/systemd/system/vipd.service"); err == nil {
		if m := regexp.MustCompile(`Overall exposure level for vipd.service: .*`).FindString(out); m != "" {
			t.Log("systemd-analyze security --offline=yes: " + m)
		}
	}

	// Purge: everything the package put here is gone.
	out, err = inNewNetns("dpkg --purge vipd")
	installed = err != nil
	if err != nil {
		t.Fatalf("dpkg --purge vipd: %v\n%s", err, out)
	}
	for _, p := range []string{"/usr/bin/vipd", "/usr/lib/systemd/system/vipd.service", "/usr/lib/sysctl.d/60-vipd.conf", "/etc/vipd", "/usr/share/doc/vipd"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after dpkg --purge", p)
		}
	}
}

// inNewNetns runs a shell command in a network namespace of its own (gone when the command ends).
func inNewNetns(script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lookupID(t *testing.T, db, name string) int {
	t.Helper()
	f := strings.Split(strings.TrimSpace(run(t, "getent", db, name)), ":")
	id, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatalf("getent %s %s: %v", db, name, f)
	}
	return id
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// assertStatic checks the binary has no ELF interpreter, i.e. needs no libc on the target.
func assertStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked: build it with make build (CGO_ENABLED=0)", path)
		}
	}
}
