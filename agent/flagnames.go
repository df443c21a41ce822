package agent

import (
	"strings"

	"github.com/vipd/vipd/internal/fielderr"
)

// The components validate their own Config and name their own fields (internal/fielderr); these tables are the
// one place that knows how an operator spells each field. A field missing here is shown by its Go name, which
// a test catches (TestEveryComponentFieldHasAFlag).
var (
	// frontendFlags are the frontend settings as flags: the shorthand for the one "default" frontend, and
	// the defaults of every listed one.
	frontendFlags = merge(healthFlags, proxyFlags, map[string]string{"Listen": "listen"})
	// frontendYAML are the keys of one entry of frontends: in the -config file.
	frontendYAML = map[string]string{
		"Listen": "listen", "Backends": "backends", "Balance": "balance", "MinHealthy": "min-healthy", "Type": "check.type",
		"Checker": "check.type", "Path": "check.path", "Interval": "check.interval", "Timeout": "check.timeout",
		"Rise": "check.rise", "Fall": "check.fall", "CAFile": "check.ca-file", "CertFile": "check.cert-file",
		"KeyFile": "check.key-file", "InsecureSkipVerify": "check.insecure-skip-verify",
	}
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
		"LeaseTimeout": "raft-lease", "EncryptFile": "encrypt-file", "TLS.CA": "tls-ca-file", "TLS.Cert": "tls-cert-file",
		"TLS.Key": "tls-key-file", "TLS": "tls-cert-file", "Insecure": "insecure", "ReapAfter": "reap-after",
	}
	vipFlags = map[string]string{
		"VIPs": "vip", "GARPRefresh": "garp-refresh", "PreemptDelay": "preempt-delay", "HookTimeout": "hook-timeout",
		"OnAcquire": "on-acquire", "OnRelease": "on-release", "Priority": "priority", "Witness": "witness",
		"Announce": "garp", "Interface": "interface", "RaftHeartbeat": "raft-heartbeat",
		"HandoverDrain": "handover-drain", "Ports": "listen", "DrainTimeout": "drain-timeout",
	}
)

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// flagError turns a component's validation error into the ConfigError an operator sees, naming flags from
// names. An error that is not a field error (a file the component could not read, say) keeps its message.
func flagError(err error, names map[string]string) error {
	return settingError(err, func(field string) string { return flagName(field, names) })
}

// settingError is flagError with any way of naming a field: flags, or a frontend's YAML keys.
func settingError(err error, name func(field string) string) error {
	if err == nil {
		return nil
	}
	fe, ok := fielderr.As(err)
	if !ok {
		return &ConfigError{msg: err.Error(), cause: err}
	}
	return &ConfigError{msg: fe.Render(name), cause: err}
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
