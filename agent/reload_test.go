package agent

import (
	"slices"
	"testing"
	"time"
)

func TestImmutableChanges(t *testing.T) {
	old := Default()
	old.Node, old.Bind, old.VIPs = "lb1", "10.0.0.11", []string{"10.0.0.50/24"}
	next := old
	next.Backends = []string{"10.0.0.21:6443"}
	next.CheckInterval = time.Second
	next.LogLevel = "debug"
	next.OnAcquire = HookCommand{Shell: "/bin/true"}
	next.Frontends = []FrontendConfig{{Name: "x"}}
	if got := immutableChanges(old, next); len(got) != 0 {
		t.Errorf("live settings reported as immutable: %v", got)
	}
	next.Node = "lb9"
	next.RaftPort = 9999
	next.VIPs = []string{"10.0.0.51/24"}
	next.DataDir = "/elsewhere"
	want := []string{"-data-dir", "-node", "-raft-port", "-vip"}
	if got := immutableChanges(old, next); !slices.Equal(got, want) {
		t.Errorf("immutableChanges = %v, want %v", got, want)
	}
}
