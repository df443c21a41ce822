package vip

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestFenceAllowsOnlyWithinTheWindowOfTheLatestProof(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		f := newFence(100 * time.Millisecond)
		steps := []struct {
			name string
			do   func()
			want bool
		}{
			{"no proof yet", func() {}, false},
			{"proof started now", func() { f.confirm(t0) }, true},
			{"99 ms later", func() { time.Sleep(99 * time.Millisecond) }, true},
			{"window over (a pause)", func() { time.Sleep(time.Millisecond) }, false},
			{"an older proof cannot extend it", func() { f.confirm(t0.Add(-time.Second)) }, false},
			{"a proof started during the pause", func() { f.confirm(t0.Add(50 * time.Millisecond)) }, true},
			{"revoked on release", f.revoke, false},
			{"a stale late confirm after release still counts from its start", func() { f.confirm(t0.Add(60 * time.Millisecond)) }, true},
			{"until its own window ends", func() { time.Sleep(60 * time.Millisecond) }, false},
		}
		for _, s := range steps {
			s.do()
			if got := f.allow(); got != s.want {
				t.Fatalf("%s (t0+%v): allow() = %v, want %v", s.name, time.Since(t0), got, s.want)
			}
		}
	})
}
