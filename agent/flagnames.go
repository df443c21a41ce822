package agent

import (
	"strings"

	"github.com/vipd/vipd/internal/fielderr"
)

// The components validate their own Config and name their own fields (internal/fielderr); these tables are the
// one place that knows how an operator spells each field. A field missing here is shown by its Go name, which
// a test catches (TestEveryComponentFieldHasAFlag).
var (
	healthFlags = map[string]string{
		"Interval": "check-interval", "Timeout": "check-timeout", "Rise": "rise", "Fall": "fall",
		"MinHealthy": "min-healthy", "Backends": "backend", "Checker": "check",
		// health.CheckConfig
		"Type": "check", "Path": "check-path", "CAFile": "check-ca-file", "CertFile": "check-cert-file",
		"KeyFile": "check-key-file", "InsecureSkipVerify": "check-insecure-skip-verify",
	}
	proxyFlags = map[string]string{
		"Balance": "balance", "DialTimeout": "dial-timeout", "IdleTimeout": "idle-timeout", "KeepAlive": "keepalive",
		"DrainTimeout": "drain-timeout", "MaxConns": "max-conns", "Retries": "retries",
	}
	clusterFlags = map[string]string{
		"NodeName": "node", "BindAddr": "bind", "AdvertiseAddr": "advertise", "GossipPort": "gossip-port",
		"RaftPort": "raft-port", "DataDir": "data-dir", "BootstrapExpect": "bootstrap-expect", "Join": "join",
		"EncryptKey": "encrypt", "Dev": "dev", "HeartbeatTimeout": "raft-heartbeat", "ElectionTimeout": "raft-election",
		"LeaseTimeout": "raft-lease",
	}
	vipFlags = map[string]string{
		"VIPs": "vip", "GARPRefresh": "garp-refresh", "PreemptDelay": "preempt-delay", "HookTimeout": "hook-timeout",
		"OnAcquire": "on-acquire", "OnRelease": "on-release", "Priority": "priority", "Witness": "witness",
		"Announce": "garp", "Interface": "interface",
	}
)

// flagError turns a component's validation error into the ConfigError an operator sees, naming flags from
// names. An error that is not a field error (a file the component could not read, say) keeps its message.
func flagError(err error, names map[string]string) error {
	if err == nil {
		return nil
	}
	fe, ok := fielderr.As(err)
	if !ok {
		return &ConfigError{msg: err.Error(), cause: err}
	}
	return &ConfigError{msg: fe.Render(func(field string) string { return flagName(field, names) }), cause: err}
}

// flagName spells field as a flag: "Backends[2]" is -backend, an unknown field keeps its Go name.
func flagName(field string, names map[string]string) string {
	if i := strings.IndexByte(field, '['); i >= 0 {
		field = field[:i]
	}
	if n, ok := names[field]; ok {
		return "-" + n
	}
	return field
}
