package vip

import (
	"testing"
	"time"
)

type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time               { return c.now }
func (c *stepClock) NewTimer(time.Duration) Timer { panic("not used by the fence") }

func TestFenceAllowsOnlyWithinTheWindowOfTheLatestProof(t *testing.T) {
	t0 := time.Unix(1000, 0)
	clk := &stepClock{now: t0}
	f := newFence(clk, 100*time.Millisecond)
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"no proof yet", func() {}, false},
		{"proof started now", func() { f.confirm(t0) }, true},
		{"99 ms later", func() { clk.now = t0.Add(99 * time.Millisecond) }, true},
		{"window over (a pause)", func() { clk.now = t0.Add(100 * time.Millisecond) }, false},
		{"an older proof cannot extend it", func() { f.confirm(t0.Add(-time.Second)) }, false},
		{"a proof started during the pause", func() { f.confirm(t0.Add(50 * time.Millisecond)) }, true},
		{"revoked on release", f.revoke, false},
		{"a stale late confirm after release still counts from its start", func() { f.confirm(t0.Add(60 * time.Millisecond)) }, true},
	}
	for _, s := range steps {
		s.do()
		if got := f.allow(); got != s.want {
			t.Fatalf("%s: allow() = %v, want %v", s.name, got, s.want)
		}
	}
}
