package agent

import (
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/vipd/vipd/vip"
)

// HookCommand is -on-acquire / -on-release: on the command line a shell command (run with sh -c); in the
// -config file either that string or a list, which runs as an argv without a shell — the form that works in
// vipd's FROM scratch image, which has no sh.
type HookCommand struct {
	Shell string
	Argv  []string
}

// String and Set make it a flag.Value: the flag takes the shell form.
func (h *HookCommand) String() string {
	if h == nil {
		return ""
	}
	if len(h.Argv) > 0 {
		return fmt.Sprintf("%q", h.Argv)
	}
	return h.Shell
}

// Set takes a shell command line (the command-line form).
func (h *HookCommand) Set(s string) error {
	*h = HookCommand{Shell: s}
	return nil
}

// UnmarshalYAML takes a string (shell) or a sequence of strings (argv).
func (h *HookCommand) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*h = HookCommand{Shell: n.Value}
		return nil
	case yaml.SequenceNode:
		var argv []string
		if err := n.Decode(&argv); err != nil {
			return err
		}
		*h = HookCommand{Argv: argv}
		return nil
	}
	return fmt.Errorf("line %d: a hook is a shell command (a string) or an argv list", n.Line)
}

func (h HookCommand) vip() vip.Hook { return vip.Hook{Shell: h.Shell, Argv: h.Argv} }
