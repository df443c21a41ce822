package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
	"github.com/vipd/vipd/internal/pki"
)

// Default ports: gossip as Consul/Serf use it, raft on the next port.
const (
	DefaultGossipPort = 7946
	DefaultRaftPort   = 7947
)

// Default raft timings, chosen for a LAN of 3-5 nodes.
//
// DefaultHeartbeat bounds failure detection: after a leader crash a follower notices within
// [HeartbeatTimeout, 2*HeartbeatTimeout) of its last contact and then wins a pre-vote and a vote round trip
// on loopback/LAN in a few milliseconds. DefaultLease is half the heartbeat timeout so that a leader cut off
// from its peers steps down before any follower may start an election (see the package comment).
// DefaultElection is the candidate's retry timer after a split vote.
//
// Measured (bench_test.go, 3 nodes in one process, real TCP/UDP on loopback, 2 shared cores, 20 trials):
// crash → new leader median 179 ms, max 282 ms; graceful leave → new leader median 5 ms, max 12 ms; partition
// → old leader steps down after ~62 ms, new leader after ~220-270 ms. NOT yet met: with both cores saturated
// by two busy loops (and other work on the machine), scheduling stalls of 50-145 ms made the leader's 50 ms
// lease expire: 36 step-downs in 5 minutes. Heartbeat 200 ms / lease 100 ms gave 0 changes in a 1-minute
// saturated run but crash failover median 344 ms, max 730 ms. Which target wins is an open decision; the
// values are flags (-raft-heartbeat, -raft-election, -raft-lease).
const (
	DefaultHeartbeat = 100 * time.Millisecond
	DefaultElection  = 100 * time.Millisecond
	DefaultLease     = 50 * time.Millisecond
)

// MinTimeout is the smallest accepted raft timeout: below it the lease check (10 ms granularity in raft) and
// goroutine scheduling dominate, and leaders would step down spuriously.
const MinTimeout = 20 * time.Millisecond

// MaxTimeout caps each Raft timing: beyond a minute a failed leader would keep the VIP unserved for longer
// than any operator would wait, so a larger value is a typo (a missing unit), not a choice.
const MaxTimeout = 60 * time.Second

// ErrInvalidConfig is wrapped by every validation error from New (each a *fielderr.Error naming the field).
var ErrInvalidConfig = errors.New("invalid cluster config")

// Config describes one node. Zero values take the documented defaults.
type Config struct {
	// NodeName is this node's unique name; it is also its raft server ID. 1-63 characters from
	// [A-Za-z0-9._-] (ValidNodeName).
	NodeName string
	// BindAddr is the IP gossip and raft listen on.
	BindAddr string
	// AdvertiseAddr is the IP peers reach this node on; empty = BindAddr, which must then be a specific
	// address (not 0.0.0.0 / ::).
	AdvertiseAddr string
	// GossipPort (0 = 7946) and RaftPort (0 = 7947).
	GossipPort, RaftPort int
	// DataDir holds raft.db, the raft snapshots and the keyring. Required unless Dev, where empty means a
	// temporary directory removed by Shutdown/Leave (dev state does not survive a restart).
	DataDir string
	// BootstrapExpect is the number of nodes that bootstrap raft together; 0 = never bootstrap, wait to be
	// added by a leader.
	BootstrapExpect int
	// Join lists peers to join (host or host:port, default port GossipPort); retried with backoff.
	Join []string

	// EncryptKey is the cluster key (16, 24 or 32 bytes): it encrypts and authenticates gossip and
	// authenticates Raft connections (see the package comment). Tests set it directly; operators give
	// EncryptFile. A keyring persisted in DataDir by an earlier rotation takes precedence.
	EncryptKey []byte
	// EncryptFile is a file holding the cluster key in base64 (as `vipd keygen` prints it), readable by its
	// owner only. New reads it into EncryptKey.
	EncryptFile string
	// TLS, when set, authenticates Raft (and, without a key, gossip) with mutual TLS 1.3: CA (the cluster's CA
	// certificates), Cert (this node's certificate, which must name it) and Key are PEM files, re-read when
	// they change. All three or none.
	TLS pki.Files
	// Insecure runs without any authentication, as vipd did before keys and certificates: anyone who can
	// reach the gossip and Raft ports can join, vote and move the VIP. It must be asked for explicitly and
	// excludes a key and TLS.
	Insecure bool

	// Dev runs a single-node cluster bootstrapped at once. Without a key or TLS it makes a throwaway key, so
	// even a dev node answers nobody else.
	Dev bool
	// HeartbeatTimeout, ElectionTimeout, LeaseTimeout: raft timings; zero = DefaultHeartbeat,
	// DefaultElection, DefaultLease.
	HeartbeatTimeout, ElectionTimeout, LeaseTimeout time.Duration
	// ReapAfter removes a voter that gossip has reported failed for longer than this, when the remaining
	// voters keep a quorum with the alive ones (Consul autopilot's CleanupDeadServers); 0 = never.
	ReapAfter time.Duration
	// Logger receives this package's, raft's and memberlist's logs; nil = discard.
	Logger *slog.Logger
	// Version is gossiped in Meta.Version.
	Version string
	// Partition, when set, drops traffic to the peers it blocks (tests and fault drills); nil in production.
	Partition *Partition
}

// tlsSet reports whether any TLS file is given.
func tlsSet(f pki.Files) bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

func (c Config) withDefaults() Config {
	if c.GossipPort == 0 {
		c.GossipPort = DefaultGossipPort
	}
	if c.RaftPort == 0 {
		c.RaftPort = DefaultRaftPort
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeat
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElection
	}
	if c.LeaseTimeout == 0 {
		c.LeaseTimeout = DefaultLease
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func invalid(field, format string, args ...any) error {
	return fielderr.New(ErrInvalidConfig, field, format, args...)
}

// validate checks a config that already has its defaults. It reads no file: security() does.
func (c Config) validate() error {
	if c.NodeName == "" {
		return invalid("NodeName", "required: a unique name per node, e.g. the host name")
	}
	if !ValidNodeName(c.NodeName) {
		return invalid("NodeName", "%q is not a valid node name: use 1-%d characters from A-Z a-z 0-9 . _ -", c.NodeName, maxNodeName)
	}
	bind, err := netip.ParseAddr(c.BindAddr)
	if err != nil {
		return invalid("BindAddr", "%q is not an IP address", c.BindAddr)
	}
	adv, err := netip.ParseAddr(c.AdvertiseAddr)
	if err != nil {
		return invalid("AdvertiseAddr", "%q is not an IP address", c.AdvertiseAddr)
	}
	if adv.IsUnspecified() {
		if bind.IsUnspecified() {
			return invalid("BindAddr", "%s is a wildcard: set {AdvertiseAddr} to the address peers reach this node on", c.BindAddr)
		}
		return invalid("AdvertiseAddr", "%s is a wildcard address: give the address peers reach this node on", c.AdvertiseAddr)
	}
	for _, p := range []struct {
		field string
		v     int
	}{{"GossipPort", c.GossipPort}, {"RaftPort", c.RaftPort}} {
		if p.v < 1 || p.v > 65535 {
			return invalid(p.field, "%d out of range 1-65535", p.v)
		}
	}
	if c.GossipPort == c.RaftPort {
		return invalid("RaftPort", "%d is also {GossipPort}: give them different ports", c.RaftPort)
	}
	if c.DataDir == "" && !c.Dev {
		return invalid("DataDir", "required: raft state and the keyring live there")
	}
	if c.BootstrapExpect < 0 {
		return invalid("BootstrapExpect", "%d is negative", c.BootstrapExpect)
	}
	if c.Dev && c.BootstrapExpect > 1 {
		return invalid("BootstrapExpect", "%d conflicts with {Dev}, a single-node cluster", c.BootstrapExpect)
	}
	for i, j := range c.Join {
		if _, err := joinAddr(j, c.GossipPort); err != nil {
			return invalid(fmt.Sprintf("Join[%d]", i), "%q: %v", j, err)
		}
	}
	if c.ReapAfter < 0 {
		return invalid("ReapAfter", "%v is negative: give a duration, or 0 to never remove failed voters", c.ReapAfter)
	}
	if err := c.validateSecurity(); err != nil {
		return err
	}
	return validateTimings(c.HeartbeatTimeout, c.ElectionTimeout, c.LeaseTimeout)
}

// validateSecurity checks the combination of EncryptKey, EncryptFile, TLS and Insecure (not the files).
func (c Config) validateSecurity() error {
	if c.EncryptKey != nil {
		if err := checkKeyLen(c.EncryptKey); err != nil {
			return invalid("EncryptKey", "%v", err)
		}
	}
	if c.EncryptKey != nil && c.EncryptFile != "" {
		return invalid("EncryptFile", "given together with {EncryptKey}: give the key once")
	}
	if tlsSet(c.TLS) {
		for _, f := range []struct{ field, v string }{{"TLS.CA", c.TLS.CA}, {"TLS.Cert", c.TLS.Cert}, {"TLS.Key", c.TLS.Key}} {
			if f.v == "" {
				return invalid(f.field, "missing: mutual TLS needs {TLS.CA}, {TLS.Cert} and {TLS.Key} together")
			}
		}
	}
	hasKey := c.EncryptKey != nil || c.EncryptFile != ""
	if c.Insecure && (hasKey || tlsSet(c.TLS)) {
		return invalid("Insecure", "given together with a cluster key or TLS: drop {Insecure} to keep them, or drop them to run unauthenticated")
	}
	if !c.Dev && !c.Insecure && !hasKey && !tlsSet(c.TLS) {
		return invalid("EncryptFile", "no cluster security configured, so anyone who reaches the gossip and Raft ports could join and move the VIP: "+
			"make a key with `vipd keygen > /etc/vipd/cluster.key; chmod 600 /etc/vipd/cluster.key` and give it as {EncryptFile} on every node, "+
			"or give {TLS.CA}, {TLS.Cert} and {TLS.Key}, or set {Insecure} to run unauthenticated")
	}
	return nil
}

func validateTimings(hb, el, lease time.Duration) error {
	for _, t := range []struct {
		field string
		v     time.Duration
	}{{"HeartbeatTimeout", hb}, {"ElectionTimeout", el}, {"LeaseTimeout", lease}} {
		if t.v < MinTimeout {
			return invalid(t.field, "%v is below the minimum %v", t.v, MinTimeout)
		}
		if t.v > MaxTimeout {
			return invalid(t.field, "%v is above the maximum %v (a missing unit?)", t.v, MaxTimeout)
		}
	}
	if lease > hb {
		return invalid("LeaseTimeout", "%v must not exceed {HeartbeatTimeout} %v (the old leader must step down before a follower may start an election)", lease, hb)
	}
	if hb > el {
		return invalid("HeartbeatTimeout", "%v must not exceed {ElectionTimeout} %v", hb, el)
	}
	return nil
}

// joinAddr normalizes a -join entry to host:port.
func joinAddr(s string, defPort int) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if host == "" || port == "" {
			return "", errors.New("want host or host:port")
		}
		return s, nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, uint16(defPort)).String(), nil
	}
	return net.JoinHostPort(s, fmt.Sprint(defPort)), nil
}
