package handover

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/vipd/vipd/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.RemoveStale()
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left behind: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// build is the one vipd binary of this test process, built on first use as `make build` does (static, CGO
// off) into a temporary directory TestMain removes.
var build struct {
	once     sync.Once
	dir, bin string
	err      error
}

// vipdBinary returns VIPD_BIN when set, else the binary built from this tree.
func vipdBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("VIPD_BIN"); bin != "" {
		return bin
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not in PATH to build vipd (or set VIPD_BIN to a vipd binary)")
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "vipd-handover-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "vipd")
		cmd := exec.Command("go", "build", "-trimpath", "-o", build.bin, "github.com/vipd/vipd/cmd/vipd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/vipd: %v: %s", err, strings.TrimSpace(string(out)))
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}
