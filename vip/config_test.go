package vip

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
)

// flagLike matches a command-line flag such as -raft-heartbeat, which a component's message must not name.
var flagLike = regexp.MustCompile(`(^|[\s(])-[a-z]`)

// TestConfigSafetyTiming: VerifyInterval and AnswerWindow derive from RaftHeartbeat (a third of it and all of
// it, as the agent chose before), and an override must keep 2 × VerifyInterval ≤ AnswerWindow ≤ RaftHeartbeat.
func TestConfigSafetyTiming(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name                      string
		heartbeat, window, verify time.Duration
		wantField                 string // "" = valid
		wantWindow, wantVerify    time.Duration
	}{
		{"defaults from the heartbeat", 90 * ms, 0, 0, "", 90 * ms, 30 * ms},
		{"cluster default heartbeat", 100 * ms, 0, 0, "", 100 * ms, 100 * ms / 3},
		{"shorter window, verify follows it", 90 * ms, 60 * ms, 0, "", 60 * ms, 20 * ms},
		{"verify at exactly half the window", 90 * ms, 0, 45 * ms, "", 90 * ms, 45 * ms},
		{"window at exactly the heartbeat", 90 * ms, 90 * ms, 10 * ms, "", 90 * ms, 10 * ms},
		{"no heartbeat", 0, 0, 0, "RaftHeartbeat", 0, 0},
		{"negative heartbeat", -ms, 0, 0, "RaftHeartbeat", 0, 0},
		{"window longer than the heartbeat", 90 * ms, 91 * ms, 0, "AnswerWindow", 0, 0},
		{"negative window", 90 * ms, -ms, 0, "AnswerWindow", 0, 0},
		{"verify over half the window", 90 * ms, 0, 46 * ms, "VerifyInterval", 0, 0},
		{"verify over half a shortened window", 90 * ms, 40 * ms, 30 * ms, "VerifyInterval", 0, 0},
		{"negative verify", 90 * ms, 0, -ms, "VerifyInterval", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Witness: true, RaftHeartbeat: tc.heartbeat, AnswerWindow: tc.window, VerifyInterval: tc.verify}
			c.setDefaults()
			err := c.validate()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				if c.AnswerWindow != tc.wantWindow || c.VerifyInterval != tc.wantVerify || c.BurstCount != DefaultBurstCount {
					t.Fatalf("AnswerWindow %v, VerifyInterval %v, BurstCount %d; want %v, %v, %d",
						c.AnswerWindow, c.VerifyInterval, c.BurstCount, tc.wantWindow, tc.wantVerify, DefaultBurstCount)
				}
				return
			}
			fe, ok := fielderr.As(err)
			if !ok || !errors.Is(err, ErrInvalidConfig) || fe.Field != tc.wantField {
				t.Fatalf("err = %v, want a field error on %s wrapping ErrInvalidConfig", err, tc.wantField)
			}
			// The agent renders field names as flags; the message itself names none.
			flags := fe.Render(func(f string) string { return "-flag-" + f })
			if flagLike.MatchString(fe.Error()) || !strings.HasPrefix(flags, "-flag-"+tc.wantField+": ") {
				t.Errorf("message %q (rendered %q): want field names only, rendered by the caller", fe.Error(), flags)
			}
		})
	}
}
