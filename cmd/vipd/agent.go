package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/vipd/vipd/agent"
)

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP means reload (keepalived's and Consul's convention; Go's default would kill the agent). Caught
	// before anything else so a HUP during start-up is not fatal either.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := parseAgentConfig(args, stdout)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	logger := newLogger(stderr, level, cfg.LogFormat)
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // agent.New names a bad -log-level
	a, err := agent.New(cfg, agent.Options{
		Logger: logger, LogLevel: level, Version: buildInfo().Version, Build: buildInfo(),
		// Reload re-reads what the agent was started with: the -config file, then the same flags on top.
		Reload: func() (agent.Config, error) { return parseAgentConfig(args, io.Discard) },
	})
	if err != nil {
		if errors.Is(err, agent.ErrInvalid) {
			return usageError{"vipd agent: " + err.Error()}
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP received: reloading the configuration")
				_ = a.Reload(ctx) // the agent logs the outcome
			}
		}
	})
	defer cancel() // runs before wg.Wait: stops the SIGHUP loop once Run returns
	return a.Run(ctx)
}

func newLogger(w io.Writer, level *slog.LevelVar, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
