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

// Hook is a command run after acquiring or releasing the VIP: either a shell command line (run with sh -c)
// or an argv list run directly, without a shell — the only form that works where there is no sh, such as
// vipd's FROM scratch image. The zero Hook runs nothing.
type Hook struct {
	Shell string
	Argv  []string
}

// IsZero reports whether h runs nothing.
func (h Hook) IsZero() bool { return h.Shell == "" && len(h.Argv) == 0 }

// String is h as logs show it.
func (h Hook) String() string {
	if len(h.Argv) > 0 {
		return fmt.Sprintf("%q", h.Argv)
	}
	return h.Shell
}

// validate checks that h can run on this system, naming field.
func (h Hook) validate(field string) error {
	switch {
	case h.Shell != "" && len(h.Argv) > 0:
		return invalid(field, "give a shell command or an argv list, not both")
	case h.Shell != "":
		if _, err := exec.LookPath("sh"); err != nil {
			return invalid(field, "%q runs with sh -c, but this system has no sh (vipd's FROM scratch image has none): "+
				"give the command as a list in the -config file, which runs without a shell, e.g. [/hooks/notify, acquired]", h.Shell)
		}
	case len(h.Argv) > 0:
		if h.Argv[0] == "" {
			return invalid(field, "the argv list starts with an empty program name")
		}
		if _, err := exec.LookPath(h.Argv[0]); err != nil {
			return invalid(field, "program %q not found (%v): give an absolute path to an executable", h.Argv[0], err)
		}
	}
	return nil
}

type hookEvent struct {
	name string // "acquire" or "release"
	hook Hook
}

// hookRunner runs -on-acquire/-on-release commands one at a time, in order, each bounded by a timeout.
// enqueue never blocks; run owns the only goroutine and returns when the queue is closed and drained.
type hookRunner struct {
	queue   chan hookEvent
	timeout func() time.Duration // read per hook: a reload may change it
	env     []string
	logger  *slog.Logger
	metrics *Metrics
}

func newHookRunner(timeout func() time.Duration, vips string, logger *slog.Logger, metrics *Metrics) *hookRunner {
	return &hookRunner{
		queue:   make(chan hookEvent, hookQueueSize),
		timeout: timeout,
		env:     []string{"VIPD_VIPS=" + vips},
		logger:  logger,
		metrics: metrics,
	}
}

// enqueue schedules hook (no-op when zero) without blocking.
func (h *hookRunner) enqueue(name string, hook Hook) {
	if hook.IsZero() {
		return
	}
	select {
	case h.queue <- hookEvent{name: name, hook: hook}:
	default:
		h.logger.Error("VIP hook dropped: queue full", "hook", name, "cmd", hook.String())
		h.metrics.hookFailed(name)
	}
}

// run executes queued hooks until the queue is closed and empty. Hooks are not cancelled by the
// Manager's shutdown (the release hook at shutdown must still run) but each is bounded by the timeout.
func (h *hookRunner) run() {
	for ev := range h.queue {
		if err := h.exec(ev); err != nil {
			h.logger.Error("VIP hook failed", "hook", ev.name, "cmd", ev.hook.String(), "err", err)
			h.metrics.hookFailed(ev.name)
		}
	}
}

func (h *hookRunner) exec(ev hookEvent) error {
	timeout := h.timeout()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var cmd *exec.Cmd
	if len(ev.hook.Argv) > 0 {
		cmd = exec.CommandContext(ctx, ev.hook.Argv[0], ev.hook.Argv[1:]...)
	} else {
		cmd = exec.CommandContext(ctx, "sh", "-c", ev.hook.Shell)
	}
	cmd.Env = append(append(os.Environ(), h.env...), "VIPD_EVENT="+ev.name)
	// Children of a hook may keep the output pipe open after sh is killed; stop waiting for them.
	cmd.WaitDelay = time.Second
	setProcessGroup(cmd)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("run %s hook %s: timed out after %v", ev.name, ev.hook, timeout)
	}
	if err != nil {
		return fmt.Errorf("run %s hook %s: %w (output: %q)", ev.name, ev.hook, err, strings.TrimSpace(string(out)))
	}
	h.logger.Info("VIP hook ran", "hook", ev.name, "cmd", ev.hook.String())
	return nil
}

// hookSet is the hooks in force; Manager.SetHooks replaces it while the Manager runs.
type hookSet struct {
	acquire, release Hook
	timeout          time.Duration
}
