package vip_test

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip"
	"github.com/vipd/vipd/vip/viptest"
)

// TestHookValidation: a shell hook needs sh (the FROM scratch image has none: the error says to use the argv
// form), an argv hook needs its program, and NewManager and SetHooks check the same.
func TestHookValidation(t *testing.T) {
	base := func() vip.Config {
		return vip.Config{VIPs: []netip.Prefix{vip4}, RaftHeartbeat: testHeartbeat, Announce: true}
	}
	new := func(c vip.Config) error {
		_, err := vip.NewManager(c, viptest.NewFakeLeadership(), viptest.NewFakeHealth(), viptest.NewFakeKernel())
		return err
	}
	c := base()
	c.OnAcquire = vip.Hook{Argv: []string{"/nonexistent/notify"}}
	if err := new(c); err == nil || !strings.Contains(err.Error(), `OnAcquire: program "/nonexistent/notify" not found`) {
		t.Errorf("argv hook with a missing program: %v", err)
	}
	c = base()
	c.OnRelease = vip.Hook{Shell: "true", Argv: []string{"true"}}
	if err := new(c); err == nil || !strings.Contains(err.Error(), "OnRelease: give a shell command or an argv list, not both") {
		t.Errorf("both forms: %v", err)
	}
	t.Setenv("PATH", t.TempDir()) // no sh here, as in the FROM scratch image
	c = base()
	c.OnAcquire = vip.Hook{Shell: "echo acquired"}
	err := new(c)
	if err == nil || !strings.Contains(err.Error(), "has no sh") || !strings.Contains(err.Error(), "as a list") || !errors.Is(err, vip.ErrInvalidConfig) {
		t.Errorf("shell hook without sh: %v", err)
	}
	m, err := vip.NewManager(base(), viptest.NewFakeLeadership(), viptest.NewFakeHealth(), viptest.NewFakeKernel())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetHooks(vip.Hook{Shell: "echo"}, vip.Hook{}, 0); err == nil || !strings.Contains(err.Error(), "has no sh") {
		t.Errorf("SetHooks with a shell hook and no sh: %v", err)
	}
}

// TestArgvHookRunsWithoutShell runs an acquire hook given as an argv list, then replaces it with SetHooks while
// the Manager runs: the next acquisition runs the new one.
func TestArgvHookRunsWithoutShell(t *testing.T) {
	touch, err := exec.LookPath("touch")
	if err != nil {
		t.Skipf("no touch(1) here: %v", err)
	}
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	r := newRig(t, func(c *vip.Config) {
		c.OnAcquire = vip.Hook{Argv: []string{touch, first}}
		c.HookTimeout = 5 * time.Second
	})
	r.start(t)
	r.l.SetLeader(true)
	testutil.WaitFor(t, 5*time.Second, "the argv acquire hook to run", func() bool { _, err := os.Stat(first); return err == nil })
	if err := r.m.SetHooks(vip.Hook{Argv: []string{touch, second}}, vip.Hook{}, 0); err != nil {
		t.Fatal(err)
	}
	r.l.SetLeader(false)
	testutil.WaitFor(t, 2*time.Second, "VIP released", r.released)
	r.l.SetLeader(true)
	testutil.WaitFor(t, 5*time.Second, "the replaced acquire hook to run", func() bool { _, err := os.Stat(second); return err == nil })
}
