package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// VipdBuild is one vipd binary per test process, built on first use as `make build` does (static, CGO off)
// into a temporary directory, for the suites that run the real agent in namespaces. A test package holds one
// in a variable and calls Remove from TestMain after m.Run.
type VipdBuild struct {
	once     sync.Once
	dir, bin string
	err      error
}

// Binary returns VIPD_BIN when set, else the binary built from this tree; it skips the test when the go
// tool is missing and fails it when the build does.
func (b *VipdBuild) Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("VIPD_BIN"); bin != "" {
		return bin
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not in PATH to build vipd (or set VIPD_BIN to a vipd binary)")
	}
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "vipd-bin-")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "vipd")
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.bin, "github.com/vipd/vipd/cmd/vipd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/vipd: %v: %s", err, strings.TrimSpace(string(out)))
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// Remove deletes the built binary's directory, if Binary built one.
func (b *VipdBuild) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
