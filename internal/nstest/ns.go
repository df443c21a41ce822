// Package nstest builds throw-away network namespaces for tests that run real processes and sockets on a
// private segment: a bridge in a namespace of its own, and namespaces plugged into it with one veth each, so
// nothing touches the host's interfaces. Everything a test creates is removed by t.Cleanup, also when the
// test fails; names carry the process id and a counter, so concurrent test processes never collide. It is
// imported by _test.go files only.
//
// Code runs "inside" a namespace on an OS thread switched into it and back (Do), never on a thread that is
// discarded: a thread that exits delivers Pdeathsig to every child it forked, which would kill the
// processes a test started with it (see StartProcess).
package nstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Require skips t unless this process can create network namespaces (root) and has the tools the package
// runs (ip from iproute2, sysctl from procps).
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs the %s command", tool)
		}
	}
}

// counter makes namespace names unique within the process; the pid makes them unique across processes.
var counter atomic.Int64

// NS is one network namespace.
type NS struct {
	// Name is the namespace's name in /run/netns (ip netns).
	Name string
	h    netns.NsHandle
}

// New creates a namespace whose name ends in role (a short word: "n1", "client"), with lo up; t.Cleanup
// deletes it. It skips t if namespaces cannot be created.
func New(t testing.TB, role string) *NS {
	t.Helper()
	name := fmt.Sprintf("vnt-%d-%d-%s", os.Getpid(), counter.Add(1), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	n := &NS{Name: name, h: h}
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

// Command returns a command that runs argv inside the namespace (through ip netns exec, which also gives it
// the namespace's view of /sys).
func (n *NS) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// MustRun runs argv inside the namespace and fails t with its output if it fails.
func (n *NS) MustRun(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := n.Command(argv...).CombinedOutput(); err != nil {
		t.Fatalf("in %s: %s: %v: %s", n.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
}

// Sysctl sets kernel settings (key=value) inside the namespace.
func (n *NS) Sysctl(t testing.TB, kv ...string) {
	t.Helper()
	args := []string{"sysctl", "-q"}
	for _, s := range kv {
		args = append(args, "-w", s)
	}
	n.MustRun(t, args...)
}

// Do runs f on an OS thread switched into the namespace, then switches the thread back and releases it.
// Sockets f opens belong to the namespace for their whole life, whichever goroutine uses them later.
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the namespace. Letting the goroutine end would end the thread too (it
			// is locked), and with it every child process it forked (Pdeathsig); running other goroutines on
			// it would put their sockets in the wrong namespace. Park it for the rest of the process.
			errc <- fmt.Errorf("leave netns %s: %w", n.Name, err)
			select {}
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialContext connects to addr from inside the namespace.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Dial connects to addr from inside the namespace within timeout.
func (n *NS) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.DialContext(ctx, network, addr)
}

// Listen opens a listener inside the namespace.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Netlink returns a netlink handle that works on the namespace from any thread; t.Cleanup closes it.
func (n *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.h)
	if err != nil {
		t.Fatalf("netlink in %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Interface returns the named interface of the namespace (its index and MAC).
func (n *NS) Interface(t testing.TB, name string) *net.Interface {
	t.Helper()
	var ifi *net.Interface
	if err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	}); err != nil {
		t.Fatalf("interface %s in %s: %v", name, n.Name, err)
	}
	return ifi
}

// RemoveStale deletes the namespaces a test process that no longer runs left behind (killed by a timeout,
// its Cleanup never ran), with their veths and bridges. Namespaces of running processes are left alone.
func RemoveStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "vnt-")
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // still running (or the pid was reused: then it is left for a later sweep)
		}
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}
