package localerr

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

func TestErrno(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dial: %w", &os.SyscallError{Syscall: "socket", Err: syscall.EMFILE}), "EMFILE"},
		{syscall.ENFILE, "ENFILE"},
		{fmt.Errorf("connect: %w", syscall.EADDRNOTAVAIL), "EADDRNOTAVAIL"},
		{syscall.ECONNREFUSED, ""},
		{errors.New("i/o timeout"), ""},
	} {
		got, ok := Errno(tt.err)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Errno(%v) = %q, %v; want %q", tt.err, got, ok, tt.want)
		}
	}
}

func TestRateLog(t *testing.T) {
	sink := testutil.NewLogSink(t)
	log := sink.Logger(slog.LevelInfo)
	now := time.Unix(0, 0)
	r := &RateLog{Interval: time.Minute, Now: func() time.Time { return now }}
	for range 5 {
		r.Log(log, slog.LevelWarn, "local error")
	}
	now = now.Add(time.Minute)
	r.Log(log, slog.LevelWarn, "local error")
	if got := sink.CountLinesSince(0, "local error"); got != 2 {
		t.Fatalf("%d lines for 6 errors in a minute and a bit, want 2", got)
	}
	if !strings.Contains(sink.String(), "suppressed=4") {
		t.Errorf("the second line does not count the 4 held back:\n%s", sink.String())
	}
}
