package vip

import (
	"testing"
	"time"
)

func TestReplyLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a, b := [6]byte{2, 0, 0, 0, 0, 0xa}, [6]byte{2, 0, 0, 0, 0, 0xb}
	allowed := func(l *replyLimiter[[6]byte], k [6]byte, now time.Time, n int) int {
		got := 0
		for range n {
			if l.allow(k, now) {
				got++
			}
		}
		return got
	}
	t.Run("per requester", func(t *testing.T) {
		l := newReplyLimiter[[6]byte](10, 1000, time.Second)
		if got := allowed(l, a, t0, 50); got != 10 {
			t.Fatalf("a: %d of 50 allowed in one window, want 10", got)
		}
		if got := allowed(l, b, t0.Add(500*time.Millisecond), 5); got != 5 {
			t.Fatalf("b: %d of 5 allowed while a is limited, want 5", got)
		}
		if got := allowed(l, a, t0.Add(time.Second), 50); got != 10 {
			t.Fatalf("a: %d allowed in the next window, want 10", got)
		}
	})
	t.Run("global", func(t *testing.T) {
		l := newReplyLimiter[int](10, 100, time.Second)
		got := 0
		for k := range 1000 { // 1,000 spoofed requesters
			if l.allow(k, t0) {
				got++
			}
		}
		if got != 100 {
			t.Fatalf("%d replies to 1,000 requesters in one window, want the global 100", got)
		}
		if len(l.counts) > 100 {
			t.Fatalf("%d requesters remembered, want at most the global bound 100", len(l.counts))
		}
		if !l.allow(5000, t0.Add(time.Second)) {
			t.Fatal("next window still limited")
		}
		if len(l.counts) != 1 {
			t.Fatalf("%d requesters remembered after the window turned, want 1", len(l.counts))
		}
	})
	t.Run("clock steps back", func(t *testing.T) {
		l := newReplyLimiter[[6]byte](1, 10, time.Second)
		if !l.allow(a, t0) || l.allow(a, t0) {
			t.Fatal("want exactly one reply in the first window")
		}
		if !l.allow(a, t0.Add(-time.Hour)) {
			t.Fatal("a clock stepped back must start a new window, not limit for an hour")
		}
	})
}

func TestWarnLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := warnKey{"arp conflict", [6]byte{2, 0, 0, 0, 0, 0xa}}
	b := warnKey{"arp conflict", [6]byte{2, 0, 0, 0, 0, 0xb}}
	type step struct {
		key            warnKey
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"once a minute per key, with the count suppressed", 16, []step{
			{a, 0, true, 0},
			{a, time.Second, false, 0},
			{a, 30 * time.Second, false, 0},
			{b, 30 * time.Second, true, 0}, // another MAC: its own line
			{a, 59 * time.Second, false, 0},
			{a, 60 * time.Second, true, 3},
			{a, 61 * time.Second, false, 0},
			{a, 10 * time.Minute, true, 1},
		}},
		{"same MAC, another reason", 16, []step{
			{a, 0, true, 0},
			{warnKey{"arp send", a.mac}, 0, true, 0},
		}},
		{"beyond max keys the rest share one", 2, []step{
			{a, 0, true, 0},
			{b, 0, true, 0},
			{warnKey{"arp conflict", [6]byte{2, 0, 0, 0, 0, 0xc}}, 0, true, 0}, // first overflow: logged
			{warnKey{"arp conflict", [6]byte{2, 0, 0, 0, 0, 0xd}}, time.Second, false, 0},
			{warnKey{"arp conflict", [6]byte{2, 0, 0, 0, 0, 0xe}}, 2 * time.Second, false, 0},
			// A minute later the quiet keys are forgotten and a new MAC has its own line again.
			{warnKey{"arp conflict", [6]byte{2, 0, 0, 0, 0, 0xf}}, 2 * time.Minute, true, 0},
		}},
		{"clock steps back", 16, []step{
			{a, time.Hour, true, 0},
			{a, 0, true, 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newWarnLimiter(time.Minute, tc.max)
			for i, s := range tc.steps {
				ok, suppressed := l.allow(s.key, t0.Add(s.at))
				if ok != s.wantOK || suppressed != s.wantSuppressed {
					t.Fatalf("step %d (%s %s at %v): allow = %v, %d; want %v, %d", i, s.key.reason,
						macString(s.key.mac), s.at, ok, suppressed, s.wantOK, s.wantSuppressed)
				}
				if len(l.seen) > tc.max+1 { // +1: the shared overflow key
					t.Fatalf("step %d: %d keys remembered, max %d", i, len(l.seen), tc.max)
				}
			}
		})
	}
}

func TestMACString(t *testing.T) {
	if got := macString([6]byte{0xaa, 0xbb, 0xcc, 0x01, 0x02, 0x03}); got != "aa:bb:cc:01:02:03" {
		t.Fatalf("macString = %q", got)
	}
}
