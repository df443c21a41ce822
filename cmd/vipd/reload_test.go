package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/agent"
	"github.com/vipd/vipd/internal/testutil"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGHUPAndReloadCommand runs `vipd agent` from a config file, changes the file, and reloads it by SIGHUP
// (which used to kill the agent) and by `vipd reload`; a broken file is refused and `vipd reload` says why.
func TestSIGHUPAndReloadCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vipd.yaml")
	admin := freeAddr(t)
	write := func(backends ...string) {
		t.Helper()
		y := fmt.Sprintf("listen: %q\nhttp-addr: %q\ncheck-interval: 50ms\nnice: 0\nbackend: [%s]\n", freeAddr(t), admin, strings.Join(backends, ", "))
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("127.0.0.1:1")
	// The listen address changes with every write above; pin it for the reloads that follow.
	first, _ := os.ReadFile(file)
	listen := strings.Split(strings.Split(string(first), "\n")[0], ": ")[1]
	writeKeep := func(backends ...string) {
		y := fmt.Sprintf("listen: %s\nhttp-addr: %q\ncheck-interval: 50ms\nnice: 0\nbackend: [%s]\n", listen, admin, strings.Join(backends, ", "))
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"agent", "-config", file}, io.Discard, &syncWriter{w: &stderr}) }()
	t.Cleanup(func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop on SIGTERM")
		}
	})
	backends := func() []string {
		resp, err := http.Get("http://" + admin + "/v1/backends")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var br agent.BackendsResponse
		if json.NewDecoder(resp.Body).Decode(&br) != nil || len(br.Frontends) == 0 {
			return nil
		}
		var out []string
		for _, b := range br.Frontends[0].Backends {
			out = append(out, b.Addr)
		}
		return out
	}
	testutil.WaitFor(t, 10*time.Second, "the agent to answer", func() bool { return len(backends()) == 1 })

	writeKeep("127.0.0.1:1", "127.0.0.1:2")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "SIGHUP to add a backend", func() bool { return len(backends()) == 2 })

	writeKeep("127.0.0.1:3")
	var out, errOut bytes.Buffer
	if code := run([]string{"reload", "-http-addr", admin}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "reloaded") {
		t.Fatalf("vipd reload: exit %d, %q %q", code, out.String(), errOut.String())
	}
	if got := backends(); len(got) != 1 || got[0] != "127.0.0.1:3" {
		t.Fatalf("after vipd reload: backends %v", got)
	}

	writeKeep("127.0.0.1:3", "127.0.0.1:3")
	out.Reset()
	errOut.Reset()
	if code := run([]string{"reload", "-http-addr", admin}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "-backend: 127.0.0.1:3 is listed twice") {
		t.Fatalf("vipd reload of a broken file: exit %d, stderr %q", code, errOut.String())
	}
	if got := backends(); len(got) != 1 {
		t.Fatalf("a refused reload changed the backends: %v", got)
	}
	select {
	case code := <-done:
		t.Fatalf("the agent exited (%d) during the test: %s", code, stderr.String())
	default:
	}
}

// syncWriter lets the agent's logger and the test share a buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
