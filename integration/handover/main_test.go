package handover

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/vipd/vipd/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.RemoveStale()
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

// build is the one vipd binary of this test process.
var build nstest.VipdBuild

// vipdBinary returns VIPD_BIN when set, else the binary built from this tree.
func vipdBinary(t *testing.T) string { return build.Binary(t) }
