// Package sched sets the process's CPU scheduling priority, shared by the agent and the tests that measure
// leader stability under CPU saturation with the agent's settings.
package sched

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetNice gives every thread of this process the scheduling priority nice. Linux keeps nice per thread and a
// new thread inherits its creator's, so setting it on all current threads covers the Go runtime's future ones.
// A failover daemon needs this for the same reason corosync runs realtime: a leader whose heartbeats are
// delayed by a CPU-bound neighbour for longer than the Raft lease steps down and moves the VIP for nothing.
func SetNice(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
			return fmt.Errorf("setpriority(%d) on thread %d: %w", nice, tid, err)
		}
	}
	return nil
}
