package testutil

import (
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	WaitFor(t, time.Second, "three polls", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 {
		t.Fatalf("polled %d times, want 3", n.Load())
	}
	var m atomic.Int32
	WaitForErr(t, time.Second, "two polls", func() error {
		if m.Add(1) < 2 {
			return errors.New("not yet")
		}
		return nil
	})
}

func TestLogSink(t *testing.T) {
	s := NewLogSink(t)
	log := s.Logger(slog.LevelInfo)
	log.Debug("hidden")
	mark := s.Mark()
	log.Info("refusing peer", "addr", "10.0.0.9")
	log.Info("refusing peer", "addr", "10.0.0.8")
	if s.Contains("hidden") && !testingDebug() {
		t.Error("debug line logged at info level")
	}
	if !s.ContainsLineSince(mark, "refusing", "10.0.0.9") {
		t.Error("line not found")
	}
	if got := s.CountLinesSince(mark, "refusing peer"); got != 2 {
		t.Errorf("CountLinesSince = %d, want 2", got)
	}
	if s.ContainsLine("refusing", "10.0.0.7") {
		t.Error("found a line that was never logged")
	}
}

func testingDebug() bool { return os.Getenv("VIPD_TEST_DEBUG") != "" }

// TestDuplicateJSONKeys checks the checker itself: it must see a repeated key at any depth.
func TestDuplicateJSONKeys(t *testing.T) {
	for _, tc := range []struct {
		json string
		dup  bool
	}{
		{`{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`, false},
		{`{"a":1,"a":2}`, true},
		{`{"a":1,"b":{"c":1,"c":2}}`, true},
		{`{"a":[{"b":1,"b":1}]}`, true},
	} {
		if got := DuplicateJSONKeys(tc.json) != nil; got != tc.dup {
			t.Errorf("DuplicateJSONKeys(%s) found a duplicate: %t, want %t", tc.json, got, tc.dup)
		}
	}
}
