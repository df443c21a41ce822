// Package testutil holds the helpers every package's tests share: one wait-for-condition with a deadline (no
// fixed sleeps in tests) and one slog sink that shows logs only when a test fails and keeps them for
// assertions. It is imported by _test.go files only.
package testutil

import (
	"bytes"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// pollEvery is how often WaitFor re-evaluates its condition: short enough that a waiting test adds no
// measurable latency, long enough not to burn a shared CPU.
const pollEvery = 2 * time.Millisecond

// WaitFor polls cond until it holds, failing the test with what after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
}

// WaitForErr polls cond until it returns nil, failing the test with what and cond's last error after timeout.
func WaitForErr(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(pollEvery)
	}
}

// LogSink receives slog output: it forwards each line to t.Log until the test ends (a library may log from a
// goroutine that is just exiting, after which t.Log would panic) and keeps everything for assertions.
type LogSink struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	buf  bytes.Buffer
}

// NewLogSink returns a sink bound to t.
func NewLogSink(t testing.TB) *LogSink {
	s := &LogSink{t: t}
	t.Cleanup(func() { s.mu.Lock(); s.done = true; s.mu.Unlock() })
	return s
}

// Write implements io.Writer for slog handlers.
func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	if !s.done {
		s.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// Logger returns a text logger writing to the sink, at debug level when VIPD_TEST_DEBUG is set and at
// level otherwise.
func (s *LogSink) Logger(level slog.Level) *slog.Logger {
	if os.Getenv("VIPD_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: level}))
}

// Logger is the common case: a sink at debug level bound to t.
func Logger(t testing.TB) *slog.Logger { return NewLogSink(t).Logger(slog.LevelDebug) }

// Contains reports whether anything logged so far contains sub.
func (s *LogSink) Contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Contains(s.buf.Bytes(), []byte(sub))
}

// Mark returns the current end of the log, for ContainsLineSince.
func (s *LogSink) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

// ContainsLine reports whether one logged line contains every sub.
func (s *LogSink) ContainsLine(subs ...string) bool { return s.ContainsLineSince(0, subs...) }

// ContainsLineSince reports whether one line logged after mark contains every sub.
func (s *LogSink) ContainsLineSince(mark int, subs ...string) bool {
	return s.CountLinesSince(mark, subs...) > 0
}

// CountLinesSince counts the lines logged after mark that contain every sub.
func (s *LogSink) CountLinesSince(mark int, subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, line := range bytes.Split(s.buf.Bytes()[mark:], []byte("\n")) {
		all := len(line) > 0
		for _, sub := range subs {
			all = all && bytes.Contains(line, []byte(sub))
		}
		if all {
			n++
		}
	}
	return n
}

// String returns everything logged so far.
func (s *LogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
