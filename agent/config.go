package agent

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vipd/vipd/cluster"
)

// Config is everything `vipd agent` can be told, by flag or by the -config YAML file. The yaml keys are the
// flag names, so an operator moves a setting between the command line and the file without translating it.
type Config struct {
	// Proxy.
	Listen       string        `yaml:"listen"`
	Backends     []string      `yaml:"backend"`
	Balance      string        `yaml:"balance"`
	DialTimeout  time.Duration `yaml:"dial-timeout"`
	IdleTimeout  time.Duration `yaml:"idle-timeout"`
	KeepAlive    time.Duration `yaml:"keepalive"`
	MaxConns     int           `yaml:"max-conns"`
	Retries      int           `yaml:"retries"`
	DrainTimeout time.Duration `yaml:"drain-timeout"`

	// Health checks.
	Check         string        `yaml:"check"`
	CheckPath     string        `yaml:"check-path"`
	CheckInterval time.Duration `yaml:"check-interval"`
	CheckTimeout  time.Duration `yaml:"check-timeout"`
	Rise          int           `yaml:"rise"`
	Fall          int           `yaml:"fall"`
	CheckCAFile   string        `yaml:"check-ca-file"`
	CheckCertFile string        `yaml:"check-cert-file"`
	CheckKeyFile  string        `yaml:"check-key-file"`
	CheckInsecure bool          `yaml:"check-insecure-skip-verify"`
	MinHealthy    int           `yaml:"min-healthy"`
	HTTPAddr      string        `yaml:"http-addr"`
	LogLevel      string        `yaml:"log-level"`
	LogFormat     string        `yaml:"log-format"`
	Nice          int           `yaml:"nice"`
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
	OnAcquire    string        `yaml:"on-acquire"`
	OnRelease    string        `yaml:"on-release"`
	HookTimeout  time.Duration `yaml:"hook-timeout"`
}

// Default returns the settings `vipd agent` uses for everything not given. The health-check defaults are
// HAProxy's and Envoy's usual ones; the drain timeout stays below Docker's and systemd's default stop grace
// periods so a drained agent exits 0 before it would be killed.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Listen:        ":6443",
		Balance:       "round-robin",
		DialTimeout:   3 * time.Second,
		KeepAlive:     30 * time.Second,
		DrainTimeout:  5 * time.Second,
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

// invalid builds the one-line error an operator sees: which flag, what was wrong, how to fix it.
func invalid(flag, format string, args ...any) error {
	return fmt.Errorf("%w: -%s: %s", ErrInvalid, flag, fmt.Sprintf(format, args...))
}

// ClusterEnabled reports whether the agent joins or forms a cluster.
func (c *Config) ClusterEnabled() bool {
	return c.Dev || c.BootstrapExpect > 0 || len(c.Join) > 0
}

// Validate checks every field and the relations between them before anything listens, so a bad flag never
// leaves a half-started agent behind. It checks syntax only; files and addresses are checked by the components
// that use them (see Agent.New).
func (c *Config) Validate() error {
	checks := []func() error{
		c.validateProxy,
		c.validateHealth,
		c.validateCluster,
		c.validateVIP,
		func() error { return validateHostPort("http-addr", c.HTTPAddr, true) },
		func() error { return oneOf("log-level", c.LogLevel, "debug", "info", "warn", "error") },
		func() error { return oneOf("log-format", c.LogFormat, "text", "json") },
		func() error {
			if c.Nice < -20 || c.Nice > 19 {
				return invalid("nice", "%d is out of range -20..19", c.Nice)
			}
			return nil
		},
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateProxy() error {
	if c.Witness {
		return nil // a witness runs no proxy
	}
	if err := validateHostPort("listen", c.Listen, true); err != nil {
		return err
	}
	if len(c.Backends) == 0 {
		return invalid("backend", "at least one backend is required: add -backend host:port (repeatable, or comma-separated)")
	}
	seen := map[string]bool{}
	for _, b := range c.Backends {
		if err := validateHostPort("backend", b, false); err != nil {
			return err
		}
		if seen[b] {
			return invalid("backend", "%q is listed twice: remove the duplicate", b)
		}
		seen[b] = true
	}
	if c.Balance == "roundrobin" { // HAProxy's spelling
		c.Balance = "round-robin"
	}
	if err := oneOf("balance", c.Balance, "round-robin", "least-conn"); err != nil {
		return err
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"dial-timeout", c.DialTimeout}, {"idle-timeout", c.IdleTimeout}, {"keepalive", c.KeepAlive}, {"drain-timeout", c.DrainTimeout}} {
		if err := nonNegative(d.flag, d.v); err != nil {
			return err
		}
	}
	if c.DialTimeout == 0 {
		return invalid("dial-timeout", "must be positive, got 0: use e.g. -dial-timeout 3s")
	}
	if c.MaxConns < 0 {
		return invalid("max-conns", "must be 0 (unlimited) or positive, got %d", c.MaxConns)
	}
	if c.Retries < 0 {
		return invalid("retries", "must be 0 or positive, got %d", c.Retries)
	}
	return nil
}

func (c *Config) validateHealth() error {
	if c.Witness {
		return nil
	}
	if err := oneOf("check", c.Check, "tcp", "http", "https"); err != nil {
		return err
	}
	if c.Check != "tcp" && !strings.HasPrefix(c.CheckPath, "/") {
		return invalid("check-path", "must start with /, got %q: use e.g. -check-path /readyz", c.CheckPath)
	}
	if c.CheckInterval <= 0 {
		return invalid("check-interval", "must be positive, got %s: use e.g. -check-interval 2s", c.CheckInterval)
	}
	if c.CheckTimeout <= 0 {
		return invalid("check-timeout", "must be positive, got %s: use e.g. -check-timeout 1s", c.CheckTimeout)
	}
	if c.Rise < 1 {
		return invalid("rise", "must be at least 1, got %d", c.Rise)
	}
	if c.Fall < 1 {
		return invalid("fall", "must be at least 1, got %d", c.Fall)
	}
	if c.MinHealthy < 0 || c.MinHealthy > len(c.Backends) {
		return invalid("min-healthy", "must be between 0 and the number of backends (%d), got %d", len(c.Backends), c.MinHealthy)
	}
	if c.Check != "https" && (c.CheckCAFile != "" || c.CheckCertFile != "" || c.CheckInsecure) {
		return invalid("check", "TLS options (-check-ca-file, -check-cert-file, -check-insecure-skip-verify) need -check https, got -check %s", c.Check)
	}
	return nil
}

func (c *Config) validateCluster() error {
	if !c.ClusterEnabled() {
		if c.Witness {
			return invalid("witness", "a witness only makes sense in a cluster: add -join or -bootstrap-expect")
		}
		return nil
	}
	if c.Node == "" {
		return invalid("node", "a node name is required in a cluster: use -node lb1")
	}
	if strings.ContainsAny(c.Node, " \t\n/=,") {
		return invalid("node", "%q may not contain spaces, '/', '=' or ','", c.Node)
	}
	if c.Bind != "" {
		if _, err := netip.ParseAddr(c.Bind); err != nil {
			return invalid("bind", "%q is not an IP address: use this node's address, e.g. -bind 10.0.0.11", c.Bind)
		}
	} else if !c.Dev {
		return invalid("bind", "required in a cluster: the address peers reach this node on, e.g. -bind 10.0.0.11")
	}
	if c.Advertise != "" {
		if _, err := netip.ParseAddr(c.Advertise); err != nil {
			return invalid("advertise", "%q is not an IP address", c.Advertise)
		}
	}
	for _, p := range []struct {
		flag string
		v    int
	}{{"gossip-port", c.GossipPort}, {"raft-port", c.RaftPort}} {
		if p.v < 1 || p.v > 65535 {
			return invalid(p.flag, "port %d is out of range 1-65535", p.v)
		}
	}
	if c.GossipPort == c.RaftPort {
		return invalid("raft-port", "must differ from -gossip-port (both %d)", c.RaftPort)
	}
	if c.DataDir == "" && !c.Dev {
		return invalid("data-dir", "required in a cluster: Raft keeps its log there, e.g. -data-dir /var/lib/vipd")
	}
	if c.BootstrapExpect < 0 {
		return invalid("bootstrap-expect", "must be 0 or positive, got %d", c.BootstrapExpect)
	}
	if c.Dev && (c.BootstrapExpect > 0 || len(c.Join) > 0) {
		return invalid("dev", "-dev runs a single-node cluster: drop -join and -bootstrap-expect")
	}
	for _, j := range c.Join {
		if err := validateJoin(j); err != nil {
			return err
		}
	}
	if c.Encrypt != "" {
		if _, err := DecodeKey(c.Encrypt); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateVIP() error {
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
	seen := map[netip.Addr]bool{}
	for _, v := range c.VIPs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return invalid("vip", "%q is not an address with prefix length: use e.g. -vip 10.0.0.50/24", v)
		}
		if p.Addr().Zone() != "" || !p.Addr().IsGlobalUnicast() {
			return invalid("vip", "%q is not a unicast address", v)
		}
		if seen[p.Addr()] {
			return invalid("vip", "%s is listed twice", p.Addr())
		}
		seen[p.Addr()] = true
	}
	if c.GARPRefresh <= 0 {
		return invalid("garp-refresh", "must be positive, got %s", c.GARPRefresh)
	}
	if err := nonNegative("preempt-delay", c.PreemptDelay); err != nil {
		return err
	}
	if c.HookTimeout <= 0 {
		return invalid("hook-timeout", "must be positive, got %s", c.HookTimeout)
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

// validateHostPort checks host:port. Listening addresses (hostOptional) may omit the host (all addresses) and
// use port 0; addresses to dial may not.
func validateHostPort(flag, v string, hostOptional bool) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return invalid(flag, "%q is not host:port: use e.g. -%s %s", v, flag, example(flag))
	}
	if host == "" && !hostOptional {
		return invalid(flag, "%q has no host: use e.g. -%s %s", v, flag, example(flag))
	}
	if strings.ContainsAny(host, " /") {
		return invalid(flag, "%q has an invalid host", v)
	}
	n, err := strconv.Atoi(port)
	low := 1
	if hostOptional {
		low = 0 // a listening address may ask the kernel for a free port
	}
	if err != nil || n < low || n > 65535 {
		return invalid(flag, "port %q in %q is out of range 1-65535", port, v)
	}
	return nil
}

func validateJoin(v string) error {
	if _, _, err := net.SplitHostPort(v); err == nil {
		return validateHostPort("join", v, false)
	}
	if v == "" || strings.ContainsAny(v, " /") {
		return invalid("join", "%q is not a host or host:port: use e.g. -join 10.0.0.12", v)
	}
	return nil
}

func example(flag string) string {
	switch flag {
	case "listen":
		return ":6443"
	case "http-addr":
		return "127.0.0.1:7948"
	}
	return "10.0.0.21:6443"
}

func nonNegative(flag string, d time.Duration) error {
	if d < 0 {
		return invalid(flag, "must not be negative, got %s", d)
	}
	return nil
}

func oneOf(flag, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return invalid(flag, "%q is not one of %s", v, strings.Join(allowed, ", "))
}
