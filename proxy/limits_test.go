package proxy

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDefaultMaxConns(t *testing.T) {
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	if _, err := DefaultMaxConns(0); err == nil {
		t.Fatal("DefaultMaxConns(0) did not fail")
	}
	// A soft limit lowered since the runtime raised it is raised to the hard limit again.
	low := orig
	low.Cur = 1024
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	for _, frontends := range []int{1, 2, 3} {
		got, err := DefaultMaxConns(frontends)
		if err != nil {
			t.Fatal(err)
		}
		if want := int((orig.Max - ReservedFDs) / 2 / uint64(frontends)); got != want {
			t.Errorf("DefaultMaxConns(%d) = %d, want (%d - %d) / 2 / %d = %d", frontends, got, orig.Max, ReservedFDs, frontends, want)
		}
	}
	var now unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if now.Cur != orig.Max {
		t.Fatalf("soft limit %d after DefaultMaxConns, want it raised to the hard limit %d", now.Cur, orig.Max)
	}

}

// TestDefaultMaxConnsNoRoom checks the error for a limit that leaves nothing after the reserve. Lowering the
// hard limit cannot be undone without CAP_SYS_RESOURCE, so it runs in a child process.
func TestDefaultMaxConnsNoRoom(t *testing.T) {
	const env = "VIPD_PROXY_RLIMIT_CHILD"
	if os.Getenv(env) == "" {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestDefaultMaxConnsNoRoom$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), env+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestDefaultMaxConnsNoRoom") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	tiny := unix.Rlimit{Cur: 200, Max: 200}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &tiny); err != nil {
		t.Fatalf("lower RLIMIT_NOFILE: %v", err)
	}
	n, err := DefaultMaxConns(1)
	if err == nil {
		t.Fatalf("DefaultMaxConns with RLIMIT_NOFILE 200 = %d, want an error", n)
	}
	if !strings.Contains(err.Error(), "RLIMIT_NOFILE is 200") || !strings.Contains(err.Error(), "LimitNOFILE") {
		t.Fatalf("error %q does not say the limit and the fix", err)
	}
}
