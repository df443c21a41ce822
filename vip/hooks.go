package vip

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// hookQueueSize bounds the hooks waiting to run; beyond it a hook is dropped and counted as failed,
// so a slow hook can never block a release.
const hookQueueSize = 16

type hookEvent struct {
	name string // "acquire" or "release"
	cmd  string
}

// hookRunner runs -on-acquire/-on-release commands one at a time, in order, each bounded by a timeout.
// enqueue never blocks; run owns the only goroutine and returns when the queue is closed and drained.
type hookRunner struct {
	queue   chan hookEvent
	timeout time.Duration
	env     []string
	logger  *slog.Logger
	metrics *Metrics
}

func newHookRunner(timeout time.Duration, vips string, logger *slog.Logger, metrics *Metrics) *hookRunner {
	return &hookRunner{
		queue:   make(chan hookEvent, hookQueueSize),
		timeout: timeout,
		env:     []string{"VIPD_VIPS=" + vips},
		logger:  logger,
		metrics: metrics,
	}
}

// enqueue schedules cmd (no-op when empty) without blocking.
func (h *hookRunner) enqueue(name, cmd string) {
	if cmd == "" {
		return
	}
	select {
	case h.queue <- hookEvent{name: name, cmd: cmd}:
	default:
		h.logger.Error("VIP hook dropped: queue full", "hook", name, "cmd", cmd)
		h.metrics.hookFailed(name)
	}
}

// run executes queued hooks until the queue is closed and empty. Hooks are not cancelled by the
// Manager's shutdown (the release hook at shutdown must still run) but each is bounded by the timeout.
func (h *hookRunner) run() {
	for ev := range h.queue {
		if err := h.exec(ev); err != nil {
			h.logger.Error("VIP hook failed", "hook", ev.name, "cmd", ev.cmd, "err", err)
			h.metrics.hookFailed(ev.name)
		}
	}
}

func (h *hookRunner) exec(ev hookEvent) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", ev.cmd)
	cmd.Env = append(append(os.Environ(), h.env...), "VIPD_EVENT="+ev.name)
	// Children of sh may keep the output pipe open after sh is killed; stop waiting for them.
	cmd.WaitDelay = time.Second
	setProcessGroup(cmd)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("run %s hook %q: timed out after %v", ev.name, ev.cmd, h.timeout)
	}
	if err != nil {
		return fmt.Errorf("run %s hook %q: %w (output: %q)", ev.name, ev.cmd, err, strings.TrimSpace(string(out)))
	}
	h.logger.Info("VIP hook ran", "hook", ev.name, "cmd", ev.cmd)
	return nil
}
