package attack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(attackerMain(role)) // this process is the attacker, inside its namespace
	}
	code := m.Run()
	if dir, ok := builtDir(); ok {
		os.RemoveAll(dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left behind: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// vipdBuild builds the real vipd binary once per test process, as `make build` does (static, CGO off), into
// a temporary directory TestMain removes.
type vipdBuild struct {
	once     sync.Once
	dir, bin string
	err      error
}

var build vipdBuild // the one per-process build; tests call vipdBinary

func builtDir() (string, bool) { return build.dir, build.dir != "" }

// vipdBinary returns the path of the vipd binary, building it on first use.
func vipdBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "vipd-attack-bin-")
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
