package health

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// errnoChecker fails with a wrapped errno while err is set, as a TCP check does when socket() fails.
type errnoChecker struct{ errno atomic.Int64 }

func (c *errnoChecker) Check(_ context.Context, addr string) error {
	if e := syscall.Errno(c.errno.Load()); e != 0 {
		return fmt.Errorf("tcp connect %s: %w", addr, &os.SyscallError{Syscall: "socket", Err: e})
	}
	return nil
}

// TestMonitorLocalCheckErrors checks that a check failing for a local reason (out of fds, buffers, memory,
// local ports) is not counted against the backend, is counted by errno, and is logged at most once a minute
// with the number of lines held back.
func TestMonitorLocalCheckErrors(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := startMonitor(t, Config{Rise: 1, Fall: 1, Metrics: NewMetrics(reg).Frontend("api")}, "a:1")
	checker := &errnoChecker{}
	cfg := h.config()
	cfg.Checker = checker
	if err := h.m.Update(cfg, BackendList("a:1")); err != nil {
		t.Fatal(err)
	}
	h.first()
	h.wantHealthy("a:1")

	for i, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL, syscall.EMFILE} {
		checker.errno.Store(int64(e))
		h.next() // 2 s apart: all within one minute
		if s := h.status("a:1"); s.State != StateHealthy || s.LastError != "" {
			t.Fatalf("check %d (%v) counted against the backend (Fall 1): %+v", i, e, s)
		}
	}
	h.wantHealthy("a:1")
	for errno, want := range map[string]float64{"EMFILE": 2, "ENFILE": 1, "ENOBUFS": 1, "ENOMEM": 1, "EADDRNOTAVAIL": 1} {
		if got := scalar(t, reg, `vipd_backend_check_local_errors_total{errno="`+errno+`",frontend="api"}`); got != want {
			t.Errorf("local errors %s = %v, want %v", errno, got, want)
		}
	}
	const msg = "health check failed for a local reason; not counted against the backend"
	if n := len(h.logs.Records(msg)); n != 1 {
		t.Fatalf("%d log lines for 6 local errors within a minute, want 1", n)
	}
	h.step(time.Minute)
	recs := h.logs.Records(msg)
	if len(recs) != 2 || attr(recs[1], "suppressed") != "5" {
		t.Fatalf("after a minute: %d lines, suppressed=%q; want a second line with suppressed=5", len(recs), attr(recs[len(recs)-1], "suppressed"))
	}
	if got, _ := lookup(t, reg, `vipd_backend_check_failures_total{backend="a:1",frontend="api"}`); got != 0 {
		t.Fatalf("local errors counted as check failures: %v", got)
	}

	// Any other error still counts.
	checker.errno.Store(int64(syscall.ECONNREFUSED))
	h.next()
	h.wantHealthy()
}
