package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vipd/vipd/internal/testutil"
)

func TestCheckSomaxconn(t *testing.T) {
	b, err := os.ReadFile(somaxconnPath)
	if err != nil {
		t.Skipf("no %s: %v", somaxconnPath, err)
	}
	have, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSomaxconn(have); err != nil {
		t.Fatalf("CheckSomaxconn(%d) with somaxconn %d: %v", have, have, err)
	}
	err = CheckSomaxconn(have + 1)
	if !errors.Is(err, ErrBacklogTooSmall) {
		t.Fatalf("CheckSomaxconn(%d) with somaxconn %d: %v, want ErrBacklogTooSmall", have+1, have, err)
	}
	for _, want := range []string{fmt.Sprintf("net.core.somaxconn is %d", have), fmt.Sprintf("sysctl -w net.core.somaxconn=%d", have+1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestListenWarnsOnSmallSomaxconn runs in a network namespace of its own whose somaxconn is set low: Listen
// still listens, and warns once with the value it found and the sysctl to set.
func TestListenWarnsOnSmallSomaxconn(t *testing.T) {
	if !runInNetns(t, "10.99.13.1") {
		return
	}
	if err := os.WriteFile(somaxconnPath, []byte("128"), 0o644); err != nil {
		t.Fatalf("set somaxconn in the test's namespace: %v", err)
	}
	sink := testutil.NewLogSink(t)
	p, err := New(Config{Logger: sink.Logger(slog.LevelDebug)}, newFakeBackends())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := p.Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen with a small somaxconn: %v", err)
	}
	_ = ln.Close()
	for _, want := range []string{"level=WARN", "net.core.somaxconn is 128", fmt.Sprintf("sysctl -w net.core.somaxconn=%d", RecommendedBacklog)} {
		if !sink.Contains(want) {
			t.Errorf("Listen's log does not say %q", want)
		}
	}
}
