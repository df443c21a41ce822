package attack

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/vipd/vipd/internal/nstest"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(attackerMain(role)) // this process is the attacker, inside its namespace
	}
	code := m.Run()
	build.Remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left behind: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// build is the real vipd binary of this test process (nstest.VipdBuild: VIPD_BIN, or built once).
var build nstest.VipdBuild

// vipdBinary returns the path of the vipd binary, building it on first use.
func vipdBinary(t *testing.T) string { return build.Binary(t) }
