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
