package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/vipd/vipd/agent"
)

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseAgentConfig(args, stdout)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	a, err := agent.New(cfg, agent.Options{Logger: logger, Version: buildInfo().Version, Build: buildInfo()})
	if err != nil {
		if errors.Is(err, agent.ErrInvalid) {
			return usageError{"vipd agent: " + err.Error()}
		}
		return err
	}
	return a.Run(ctx)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated already
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
