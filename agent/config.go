package agent

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/vip"
)

// Config is everything `vipd agent` can be told, by flag or by the -config YAML file. The yaml keys are the
// flag names, so an operator moves a setting between the command line and the file without translating it.
// Settings tagged reload:"live" change on SIGHUP / `vipd reload`; a reload that changes any other one is
// refused (see reload.go).
type Config struct {
	// Proxy.
	Listen       string        `yaml:"listen" reload:"live"`
	Backends     []string      `yaml:"backend" reload:"live"`
	Balance      string        `yaml:"balance" reload:"live"`
	DialTimeout  time.Duration `yaml:"dial-timeout" reload:"live"`
	IdleTimeout  time.Duration `yaml:"idle-timeout" reload:"live"`
	KeepAlive    time.Duration `yaml:"keepalive" reload:"live"`
	MaxConns     int           `yaml:"max-conns" reload:"live"`
	Retries      int           `yaml:"retries" reload:"live"`
	DrainTimeout time.Duration `yaml:"drain-timeout" reload:"live"`
	// HandoverDrain keeps the connections through the VIP across a planned move (leave, a hand-off): the
	// old holder serves them for up to DrainTimeout while the new one forwards their packets to it.
	HandoverDrain bool `yaml:"handover-drain"`

	// Health checks.
	Check         string        `yaml:"check" reload:"live"`
	CheckPath     string        `yaml:"check-path" reload:"live"`
	CheckInterval time.Duration `yaml:"check-interval" reload:"live"`
	CheckTimeout  time.Duration `yaml:"check-timeout" reload:"live"`
	Rise          int           `yaml:"rise" reload:"live"`
	Fall          int           `yaml:"fall" reload:"live"`
	CheckCAFile   string        `yaml:"check-ca-file" reload:"live"`
	CheckCertFile string        `yaml:"check-cert-file" reload:"live"`
	CheckKeyFile  string        `yaml:"check-key-file" reload:"live"`
	CheckInsecure bool          `yaml:"check-insecure-skip-verify" reload:"live"`
	MinHealthy    int           `yaml:"min-healthy" reload:"live"`
	HTTPAddr      string        `yaml:"http-addr"`
	HTTPTokenFile string        `yaml:"http-token-file" reload:"live"`
	LogLevel      string        `yaml:"log-level" reload:"live"`
	LogFormat     string        `yaml:"log-format"`
	Nice          int           `yaml:"nice" reload:"live"`
	// Frontends, from the -config file only, replaces -listen/-backend with several named frontends.
	Frontends     []FrontendConfig `yaml:"frontends" reload:"live"`
	ClusterConfig `yaml:",inline"`
	VIPConfig     `yaml:",inline"`
}

// ClusterConfig holds the -node, -bind, -join … settings. Without -join, -bootstrap-expect or -dev the agent
// runs as a proxy alone.
type ClusterConfig struct {
	Node            string        `yaml:"node"`
	Bind            string        `yaml:"bind"`
	Advertise       string        `yaml:"advertise"`
	GossipPort      int           `yaml:"gossip-port"`
	RaftPort        int           `yaml:"raft-port"`
	DataDir         string        `yaml:"data-dir"`
	BootstrapExpect int           `yaml:"bootstrap-expect"`
	Join            []string      `yaml:"join"`
	Encrypt         string        `yaml:"encrypt"`
	EncryptFile     string        `yaml:"encrypt-file"`
	TLSCAFile       string        `yaml:"tls-ca-file"`
	TLSCertFile     string        `yaml:"tls-cert-file"`
	TLSKeyFile      string        `yaml:"tls-key-file"`
	Insecure        bool          `yaml:"insecure"`
	ReapAfter       time.Duration `yaml:"reap-after" reload:"live"`
	Dev             bool          `yaml:"dev"`
	RaftHeartbeat   time.Duration `yaml:"raft-heartbeat"`
	RaftElection    time.Duration `yaml:"raft-election"`
	RaftLease       time.Duration `yaml:"raft-lease"`
}

// VIPConfig holds the floating address settings. An empty VIPs list means no VIP: the agent still proxies and,
// with a cluster, still takes part in leader election.
type VIPConfig struct {
	VIPs         []string      `yaml:"vip"`
	Interface    string        `yaml:"interface"`
	GARP         bool          `yaml:"garp"`
	GARPRefresh  time.Duration `yaml:"garp-refresh"`
	Priority     int           `yaml:"priority"`
	PreemptDelay time.Duration `yaml:"preempt-delay"`
	Witness      bool          `yaml:"witness"`
	OnAcquire    HookCommand   `yaml:"on-acquire" reload:"live"`
	OnRelease    HookCommand   `yaml:"on-release" reload:"live"`
	HookTimeout  time.Duration `yaml:"hook-timeout" reload:"live"`
}

// Default returns the settings `vipd agent` uses for everything not given. The health-check defaults are
// HAProxy's and Envoy's usual ones. The drain timeout fits Kubernetes watches (see vip.DefaultDrainTimeout);
// a supervisor's stop timeout must be longer (the packaged unit's is; Docker's 10 s default is not).
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Listen:        ":6443",
		Balance:       "round-robin",
		DialTimeout:   3 * time.Second,
		KeepAlive:     30 * time.Second,
		DrainTimeout:  vip.DefaultDrainTimeout, // long watches through the old holder end by themselves
		HandoverDrain: true,
		Check:         "tcp",
		CheckPath:     "/readyz",
		CheckInterval: 2 * time.Second,
		CheckTimeout:  time.Second,
		Rise:          2,
		Fall:          3,
		MinHealthy:    1,
		HTTPAddr:      "127.0.0.1:7948",
		LogLevel:      "info",
		LogFormat:     "text",
		Nice:          -10,
		ClusterConfig: ClusterConfig{
			Node:          host,
			GossipPort:    cluster.DefaultGossipPort,
			RaftPort:      cluster.DefaultRaftPort,
			RaftHeartbeat: cluster.DefaultHeartbeat,
			RaftElection:  cluster.DefaultElection,
			RaftLease:     cluster.DefaultLease,
			ReapAfter:     72 * time.Hour,
		},
		VIPConfig: VIPConfig{
			GARP:         true,
			GARPRefresh:  3 * time.Second,
			PreemptDelay: 30 * time.Second,
			HookTimeout:  10 * time.Second,
		},
	}
}

// ErrInvalid marks a configuration error; the CLI exits 2 on it.
var ErrInvalid = errors.New("invalid configuration")

// ConfigError is one invalid setting. Its message names the flag (as the operator spells it, whether it came
// from the command line or the -config file) and the fix. It wraps ErrInvalid and, when a component found the
// problem, that component's error.
type ConfigError struct {
	msg   string
	cause error
}

func (e *ConfigError) Error() string { return e.msg }

// Unwrap returns ErrInvalid and the component's error, if any.
func (e *ConfigError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.cause}
}

// invalid builds the one-line error an operator sees for a setting the agent itself owns: which flag, what
// was wrong, how to fix it.
func invalid(flag, format string, args ...any) error {
	return &ConfigError{msg: "-" + flag + ": " + fmt.Sprintf(format, args...)}
}

// ClusterEnabled reports whether the agent joins or forms a cluster.
func (c *Config) ClusterEnabled() bool {
	return c.Dev || c.BootstrapExpect > 0 || len(c.Join) > 0
}

// validate checks the settings only the agent owns (its own listeners, logging, and how the flags combine).
// Every other setting is validated by the component that uses it, when New builds it: one path for start-up,
// `vipd validate` and reload.
func (c *Config) validate() error {
	checks := []func() error{
		func() error {
			if c.Witness {
				return nil // a witness runs no proxy
			}
			return validateListen("listen", c.Listen)
		},
		func() error { return validateListen("http-addr", c.HTTPAddr) },
		func() error { return oneOf("log-level", c.LogLevel, "debug", "info", "warn", "error") },
		func() error { return oneOf("log-format", c.LogFormat, "text", "json") },
		func() error {
			if c.Nice < -20 || c.Nice > 19 {
				return invalid("nice", "%d is out of range -20..19", c.Nice)
			}
			return nil
		},
		c.validateRoles,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateRoles checks how -dev, -join, -witness and -vip combine.
func (c *Config) validateRoles() error {
	if !c.ClusterEnabled() && c.Witness {
		return invalid("witness", "a witness only makes sense in a cluster: add -join or -bootstrap-expect")
	}
	if c.Dev && (c.BootstrapExpect > 0 || len(c.Join) > 0) {
		return invalid("dev", "-dev runs a single-node cluster: drop -join and -bootstrap-expect")
	}
	if len(c.VIPs) == 0 {
		if c.Interface != "" {
			return invalid("interface", "set without -vip: add -vip 10.0.0.50/24 or drop -interface")
		}
		return nil
	}
	if c.Witness {
		return invalid("witness", "a witness holds no VIP: drop -vip")
	}
	if !c.ClusterEnabled() {
		return invalid("vip", "a VIP needs a cluster to decide who holds it: add -join/-bootstrap-expect, or -dev to try it alone")
	}
	return nil
}

// DecodeKey decodes an -encrypt key: base64 of 16, 24 or 32 bytes (AES-128/192/256), as `vipd keygen` prints.
func DecodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, invalid("encrypt", "not valid base64: generate a key with `vipd keygen`")
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, invalid("encrypt", "key is %d bytes, need 16, 24 or 32: generate one with `vipd keygen`", len(k))
}

// validateListen checks a listening host:port; the host may be empty (all addresses) and the port 0 (the
// kernel picks one).
func validateListen(flag, v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return invalid(flag, "%q is not host:port: use e.g. -%s %s", v, flag, example(flag))
	}
	if strings.ContainsAny(host, " /") {
		return invalid(flag, "%q has an invalid host", v)
	}
	// Digits only: a sign, which Atoi and net take, would leave the port unknown to the hand-over rules.
	if strings.ContainsAny(port, "+-") {
		return invalid(flag, "port %q in %q is not a number: write it in digits, e.g. -%s %s", port, v, flag, example(flag))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return invalid(flag, "port %q in %q is out of range 0-65535", port, v)
	}
	return nil
}

func example(flag string) string {
	if flag == "listen" {
		return ":6443"
	}
	return "127.0.0.1:7948"
}

func oneOf(flag, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return invalid(flag, "%q is not one of %s", v, strings.Join(allowed, ", "))
}
