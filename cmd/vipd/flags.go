package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vipd/vipd/agent"
)

// listFlag is a repeatable flag that also takes comma-separated values. The first use on the command line
// replaces what the config file said, so flags win over the file for lists too instead of appending to it.
type listFlag struct {
	dst     *[]string
	touched bool
}

func (l *listFlag) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.touched {
		*l.dst = nil
		l.touched = true
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.dst = append(*l.dst, part)
		}
	}
	return nil
}

// agentFlags binds every agent flag to cfg. Defaults shown by -h are cfg's current values.
func agentFlags(fs *flag.FlagSet, cfg *agent.Config, configFile *string) {
	fs.StringVar(configFile, "config", "", "YAML file with any of these settings (keys are the flag names); flags win over the file")

	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address the proxy accepts client connections on")
	fs.Var(&listFlag{dst: &cfg.Backends}, "backend", "upstream `host:port`; repeatable or comma-separated (required unless -witness)")
	fs.StringVar(&cfg.Balance, "balance", cfg.Balance, "balancing over healthy backends: round-robin or least-conn")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", cfg.DialTimeout, "timeout for connecting to a backend")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "close a connection idle this long in both directions (0 = never)")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", cfg.KeepAlive, "TCP keepalive period on client and backend sockets")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "refuse connections beyond this many open ones per frontend (0 = as many as the file descriptor limit allows, less 256 for the agent itself)")
	fs.IntVar(&cfg.Retries, "retries", cfg.Retries, "extra backends to try when a dial fails (0 = up to 2)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "on SIGTERM or a hand-over, how long open connections may finish before they are closed")
	fs.BoolVar(&cfg.HandoverDrain, "handover-drain", cfg.HandoverDrain, "on a planned VIP move (leave, hand-off), keep serving the connections through the VIP while the new holder forwards them here, for up to -drain-timeout")

	fs.StringVar(&cfg.Check, "check", cfg.Check, "active health check: tcp, http or https")
	fs.StringVar(&cfg.CheckPath, "check-path", cfg.CheckPath, "path for http/https checks; 2xx is healthy")
	fs.DurationVar(&cfg.CheckInterval, "check-interval", cfg.CheckInterval, "time between checks of one backend")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "timeout of one check")
	fs.IntVar(&cfg.Rise, "rise", cfg.Rise, "consecutive successes that make a down backend healthy")
	fs.IntVar(&cfg.Fall, "fall", cfg.Fall, "consecutive failures that make a backend unhealthy")
	fs.StringVar(&cfg.CheckCAFile, "check-ca-file", cfg.CheckCAFile, "PEM CA bundle that verifies https backends")
	fs.StringVar(&cfg.CheckCertFile, "check-cert-file", cfg.CheckCertFile, "PEM client certificate for https checks")
	fs.StringVar(&cfg.CheckKeyFile, "check-key-file", cfg.CheckKeyFile, "PEM key of -check-cert-file")
	fs.BoolVar(&cfg.CheckInsecure, "check-insecure-skip-verify", cfg.CheckInsecure, "do not verify backend certificates in https checks")
	fs.IntVar(&cfg.MinHealthy, "min-healthy", cfg.MinHealthy, "this node is healthy with at least this many healthy backends")

	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "admin API: /livez, /readyz, /metrics, /v1/... (what vipd members, status, reload, backend, keyring and leave use); changes only from loopback unless -http-token-file")
	fs.StringVar(&cfg.HTTPTokenFile, "http-token-file", cfg.HTTPTokenFile, "file (mode 0600) with the bearer token admin API changes need when -http-addr is not loopback")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json")
	fs.IntVar(&cfg.Nice, "nice", cfg.Nice, "scheduling priority of the agent (-20..19); below 0 keeps Raft heartbeats on time when other processes saturate the CPU (needs CAP_SYS_NICE, else a warning; 0 leaves it as started)")

	fs.StringVar(&cfg.Node, "node", cfg.Node, "this node's unique name in the cluster")
	fs.StringVar(&cfg.Bind, "bind", cfg.Bind, "IP address for gossip and Raft (must be on this host)")
	fs.StringVar(&cfg.Advertise, "advertise", cfg.Advertise, "IP address peers should use, when it differs from -bind (NAT)")
	fs.IntVar(&cfg.GossipPort, "gossip-port", cfg.GossipPort, "memberlist gossip port (TCP and UDP)")
	fs.IntVar(&cfg.RaftPort, "raft-port", cfg.RaftPort, "Raft port (TCP)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for Raft's log and snapshots, kept across restarts (required in a cluster; with -dev, empty means throwaway state)")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", cfg.BootstrapExpect, "form a new cluster once this many nodes see each other")
	fs.Var(&listFlag{dst: &cfg.Join}, "join", "peer `host[:port]` to join; repeatable, retried with backoff until one answers")
	fs.StringVar(&cfg.EncryptFile, "encrypt-file", cfg.EncryptFile, "`file` (mode 0600) with the base64 cluster key that encrypts gossip and authenticates Raft; make one with vipd keygen")
	fs.StringVar(&cfg.Encrypt, "encrypt", cfg.Encrypt, "the cluster `key` itself (base64); prefer -encrypt-file: a key on the command line shows in /proc/PID/cmdline")
	fs.StringVar(&cfg.TLSCAFile, "tls-ca-file", cfg.TLSCAFile, "PEM CA certificates that sign every node's certificate (mutual TLS for Raft and gossip; re-read when changed)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", cfg.TLSCertFile, "PEM certificate of this node, naming it (SAN DNS or URI vipd://NODE); see vipd tls cert create")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", cfg.TLSKeyFile, "PEM key of -tls-cert-file (mode 0600)")
	fs.BoolVar(&cfg.Insecure, "insecure", cfg.Insecure, "run the cluster without a key or certificates: anyone who reaches the gossip and Raft ports can steer it (a lab only)")
	fs.DurationVar(&cfg.ReapAfter, "reap-after", cfg.ReapAfter, "remove a voter failed this long from Raft when the others keep a quorum (0 = never)")
	fs.BoolVar(&cfg.Dev, "dev", cfg.Dev, "run a single-node cluster to try vipd out")
	fs.DurationVar(&cfg.RaftHeartbeat, "raft-heartbeat", cfg.RaftHeartbeat, "Raft heartbeat timeout: followers start an election after this silence")
	fs.DurationVar(&cfg.RaftElection, "raft-election", cfg.RaftElection, "Raft election timeout")
	fs.DurationVar(&cfg.RaftLease, "raft-lease", cfg.RaftLease, "leader lease: a leader that cannot reach a quorum this long steps down and drops the VIP")

	fs.Var(&listFlag{dst: &cfg.VIPs}, "vip", "virtual IP with prefix length (`addr/len`), e.g. 10.0.0.50/24; repeatable for dual stack")
	fs.StringVar(&cfg.Interface, "interface", cfg.Interface, "interface to announce the VIP on (default: the one whose subnet holds the VIP)")
	fs.BoolVar(&cfg.GARP, "garp", cfg.GARP, "announce the VIP with gratuitous ARP / unsolicited NA on takeover")
	fs.DurationVar(&cfg.GARPRefresh, "garp-refresh", cfg.GARPRefresh, "re-announce the VIP this often while holding it")
	fs.IntVar(&cfg.Priority, "priority", cfg.Priority, "prefer this node for the VIP over healthy peers of lower priority (0 = no preemption)")
	fs.DurationVar(&cfg.PreemptDelay, "preempt-delay", cfg.PreemptDelay, "with -priority, how long a leader must be stable before it hands over to a higher priority")
	fs.BoolVar(&cfg.Witness, "witness", cfg.Witness, "vote in Raft but never hold the VIP or proxy (a tie-breaker for two-node setups)")
	fs.Var(&cfg.OnAcquire, "on-acquire", "command (sh -c) run after this node takes the VIP; in -config also an argv list, run without a shell")
	fs.Var(&cfg.OnRelease, "on-release", "command (sh -c) run after this node drops the VIP; in -config also an argv list, run without a shell")
	fs.DurationVar(&cfg.HookTimeout, "hook-timeout", cfg.HookTimeout, "timeout of -on-acquire and -on-release")
}

// usageError is bad input on the command line or in the config file: the CLI prints it and exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseAgentConfig turns `vipd agent` arguments into a config: defaults, then the -config file, then the flags
// given on the command line. It checks syntax only; agent.New validates the settings (the one validation path).
func parseAgentConfig(args []string, stdout io.Writer) (agent.Config, error) {
	// First pass only to learn -config; the second pass re-applies every flag on top of the file.
	var configFile string
	probe := flag.NewFlagSet("vipd agent", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	probeCfg := agent.Default()
	agentFlags(probe, &probeCfg, &configFile)
	if err := probe.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, agentUsage, probe)
			return agent.Config{}, err
		}
		// The flag package quotes values but echoes a flag's name as typed: escape it, so that the message
		// stays one line of text whatever the argument held.
		return agent.Config{}, usageError{fmt.Sprintf("vipd agent: %s (see vipd agent -h)", plainText(err.Error()))}
	}
	if probe.NArg() > 0 {
		return agent.Config{}, usageError{fmt.Sprintf("vipd agent: unexpected argument %q: every setting is a -flag (see vipd agent -h)", probe.Arg(0))}
	}

	cfg := agent.Default()
	if configFile != "" {
		if err := loadConfigFile(configFile, &cfg); err != nil {
			return agent.Config{}, err
		}
	}
	fs := flag.NewFlagSet("vipd agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	agentFlags(fs, &cfg, &configFile)
	if err := fs.Parse(args); err != nil {
		return agent.Config{}, usageError{fmt.Sprintf("vipd agent: %s", plainText(err.Error()))}
	}
	return cfg, nil
}

// loadConfigFile reads the YAML file strictly: an unknown key is an error, not a silently ignored typo.
func loadConfigFile(path string, cfg *agent.Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError{fmt.Sprintf("vipd agent: -config %s: cannot read: %v", path, errors.Unwrap(err))}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:; ")
		msg = strings.ReplaceAll(msg, " in type agent.Config", "")
		return usageError{fmt.Sprintf("vipd agent: -config %s: %s (keys are the flag names without '-', see vipd agent -h)", path, strings.TrimSpace(msg))}
	}
	return nil
}

const agentUsage = `Usage: vipd agent -listen :6443 -backend host:port [-backend …] [cluster and VIP flags]

Runs the proxy, its health checks and, with -join/-bootstrap-expect/-dev, the cluster member that may hold the VIP.
Every flag can also be set in the -config YAML file under the flag's name; flags win over the file.

Flags:
`

func printUsage(w io.Writer, head string, fs *flag.FlagSet) {
	fmt.Fprint(w, head)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
