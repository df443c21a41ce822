package agent

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vipd/vipd/health"
)

// FrontendConfig is one entry of the -config file's `frontends:` list: a listener, its backends, their check
// and how connections spread over them. Unset check fields, balance and min-healthy take the top-level
// settings (-check, -check-interval, -balance, -min-healthy …), as HAProxy's `defaults` section does. Without
// `frontends:`, -listen and -backend describe the one frontend, named "default".
type FrontendConfig struct {
	Name     string          `yaml:"name"`
	Listen   string          `yaml:"listen"`
	Backends []BackendConfig `yaml:"backends"`
	Balance  string          `yaml:"balance"`
	// MinHealthy is a pointer so that an explicit 0 differs from "unset".
	MinHealthy *int        `yaml:"min-healthy"`
	Check      CheckConfig `yaml:"check"`
}

// BackendConfig is one backend of a frontend: `host:port`, or `{addr: host:port, weight: N}`.
type BackendConfig struct {
	Addr string `yaml:"addr"`
	// Weight shares round-robin picks among healthy backends (1-256, unset = 1).
	Weight int `yaml:"weight"`
}

// UnmarshalYAML accepts the short form (a bare host:port) and the long form (a mapping).
func (b *BackendConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Addr = n.Value
		return nil
	}
	type plain BackendConfig // no UnmarshalYAML: decodes the mapping strictly
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*b = BackendConfig(p)
	return nil
}

// CheckConfig is a frontend's health check; every unset field takes the top-level setting.
type CheckConfig struct {
	Type               string        `yaml:"type"`
	Path               string        `yaml:"path"`
	Interval           time.Duration `yaml:"interval"`
	Timeout            time.Duration `yaml:"timeout"`
	Rise               int           `yaml:"rise"`
	Fall               int           `yaml:"fall"`
	CAFile             string        `yaml:"ca-file"`
	CertFile           string        `yaml:"cert-file"`
	KeyFile            string        `yaml:"key-file"`
	InsecureSkipVerify *bool         `yaml:"insecure-skip-verify"`
}

// DefaultFrontend names the frontend -listen and -backend describe.
const DefaultFrontend = "default"

// frontendSpec is one frontend with every default applied: what buildFrontend turns into components.
type frontendSpec struct {
	name       string
	listen     string
	backends   []BackendConfig
	check      health.CheckConfig
	interval   time.Duration
	timeout    time.Duration
	rise, fall int
	balance    string
	minHealthy int
	// fieldName renders a component's field as the operator wrote this frontend: a flag for the shorthand,
	// a YAML path (frontends[1] (api).check.interval) for a listed frontend's own keys.
	fieldName func(field string) string
}

var frontendName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// frontendSpecs resolves the frontends: the `frontends:` list with defaults applied, or the one the flags
// describe. It checks what only the list as a whole can: names, and the shorthand not mixed with the list.
func (c *Config) frontendSpecs() ([]frontendSpec, error) {
	if len(c.Frontends) == 0 {
		backends := make([]BackendConfig, len(c.Backends))
		for i, b := range c.Backends {
			backends[i] = BackendConfig{Addr: b}
		}
		return []frontendSpec{{
			name: DefaultFrontend, listen: c.Listen, backends: backends,
			check: health.CheckConfig{Type: c.Check, Path: c.CheckPath, CAFile: c.CheckCAFile, CertFile: c.CheckCertFile,
				KeyFile: c.CheckKeyFile, InsecureSkipVerify: c.CheckInsecure},
			interval: c.CheckInterval, timeout: c.CheckTimeout, rise: c.Rise, fall: c.Fall,
			balance: c.Balance, minHealthy: c.MinHealthy,
			fieldName: func(field string) string { return flagName(field, frontendFlags) },
		}}, nil
	}
	if len(c.Backends) > 0 {
		return nil, invalid("backend", "given together with frontends: in -config: list the backends under a frontend, or drop frontends:")
	}
	specs := make([]frontendSpec, 0, len(c.Frontends))
	seen := map[string]bool{}
	for i, f := range c.Frontends {
		path := fmt.Sprintf("frontends[%d]", i)
		switch {
		case !frontendName.MatchString(f.Name):
			return nil, &ConfigError{msg: fmt.Sprintf("%s.name: %q must be 1-32 lower-case letters, digits or '-' (e.g. apiserver): it names the frontend in metrics and in vipd backend", path, f.Name)}
		case seen[f.Name]:
			return nil, &ConfigError{msg: fmt.Sprintf("%s.name: %q is used twice: give each frontend its own name", path, f.Name)}
		case f.Listen == "":
			return nil, &ConfigError{msg: fmt.Sprintf("%s (%s).listen: required, e.g. listen: \":6443\"", path, f.Name)}
		}
		seen[f.Name] = true
		if err := validateListen("listen", f.Listen); err != nil {
			return nil, &ConfigError{msg: fmt.Sprintf("%s (%s).%s", path, f.Name, strings.TrimPrefix(err.Error(), "-"))}
		}
		s := frontendSpec{
			name: f.Name, listen: f.Listen, backends: f.Backends,
			check: health.CheckConfig{
				Type: or(f.Check.Type, c.Check), Path: or(f.Check.Path, c.CheckPath),
				CAFile: or(f.Check.CAFile, c.CheckCAFile), CertFile: or(f.Check.CertFile, c.CheckCertFile),
				KeyFile: or(f.Check.KeyFile, c.CheckKeyFile), InsecureSkipVerify: c.CheckInsecure,
			},
			interval: or(f.Check.Interval, c.CheckInterval), timeout: or(f.Check.Timeout, c.CheckTimeout),
			rise: or(f.Check.Rise, c.Rise), fall: or(f.Check.Fall, c.Fall),
			balance: or(f.Balance, c.Balance), minHealthy: c.MinHealthy,
		}
		if f.Check.InsecureSkipVerify != nil {
			s.check.InsecureSkipVerify = *f.Check.InsecureSkipVerify
		}
		if f.MinHealthy != nil {
			s.minHealthy = *f.MinHealthy
		}
		prefix := fmt.Sprintf("%s (%s).", path, f.Name)
		s.fieldName = func(field string) string {
			if k, ok := yamlKey(field); ok {
				return prefix + k
			}
			return flagName(field, frontendFlags) // a global setting, such as -dial-timeout
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// or returns v unless it is the zero value, then def.
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// yamlKey spells a component field as a frontend's YAML key, if it is one: "Backends[2]" is backends[2],
// "Interval" is check.interval.
func yamlKey(field string) (string, bool) {
	base, index, _ := strings.Cut(field, "[")
	if index != "" {
		index = "[" + index
	}
	k, ok := frontendYAML[base]
	return k + index, ok
}
