package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/vipd/vipd/agent"
)

// runValidate is `vipd validate`, vipd's `haproxy -c`: it takes the agent's flags and -config file, and runs
// exactly the checks `vipd agent` runs before it listens — every setting, the files it names, addresses on
// this host, clashes among its own ports, a backend that is one of its own frontends, the capabilities and
// sysctls the VIP needs — but binds nothing and changes nothing. Exit 0 when the agent would start, 2 when not.
func runValidate(args []string, stdout io.Writer) error {
	cfg, err := parseAgentConfig(args, stdout)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.DiscardHandler), DryRun: true, Version: buildInfo().Version})
	if err != nil {
		if errors.Is(err, agent.ErrInvalid) {
			return usageError{"vipd validate: " + err.Error()}
		}
		return usageError{"vipd validate: " + err.Error()}
	}
	fmt.Fprintln(stdout, "configuration is valid:")
	for _, line := range a.Summary() {
		fmt.Fprintln(stdout, "  "+line)
	}
	return nil
}
