package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
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

// ErrInvalidConfig is wrapped by every validation error from New.
var ErrInvalidConfig = errors.New("invalid cluster config")

// Config describes one node. Zero values take the documented defaults.
type Config struct {
	// NodeName is this node's unique name (-node); it is also its raft server ID.
	NodeName string
	// BindAddr is the IP gossip and raft listen on (-bind).
	BindAddr string
	// AdvertiseAddr is the IP peers reach this node on (-advertise); empty = BindAddr, which must then be a
	// specific address (not 0.0.0.0 / ::).
	AdvertiseAddr string
	// GossipPort (0 = 7946) and RaftPort (0 = 7947).
	GossipPort, RaftPort int
	// DataDir holds raft.db and the raft snapshots. Required unless Dev, where empty means a temporary
	// directory removed by Shutdown/Leave (dev state does not survive a restart).
	DataDir string
	// BootstrapExpect is the number of nodes that bootstrap raft together (-bootstrap-expect); 0 = never
	// bootstrap, wait to be added by a leader.
	BootstrapExpect int
	// Join lists peers to join (host or host:port, default port GossipPort); retried with backoff.
	Join []string
	// EncryptKey, if set, encrypts gossip (16, 24 or 32 bytes of AES key).
	EncryptKey []byte
	// Dev runs a single-node cluster bootstrapped at once.
	Dev bool
	// HeartbeatTimeout, ElectionTimeout, LeaseTimeout: raft timings (-raft-heartbeat, -raft-election,
	// -raft-lease); zero = DefaultHeartbeat, DefaultElection, DefaultLease.
	HeartbeatTimeout, ElectionTimeout, LeaseTimeout time.Duration
	// Logger receives this package's, raft's and memberlist's logs; nil = discard.
	Logger *slog.Logger
	// Version is gossiped in Meta.Version.
	Version string
	// Partition, when set, drops traffic to the peers it blocks (tests and fault drills); nil in production.
	Partition *Partition
}

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

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// validate checks a config that already has its defaults.
func (c Config) validate() error {
	if c.NodeName == "" {
		return invalid("-node is required (a unique name per node)")
	}
	if len(c.NodeName) > 128 {
		return invalid("-node %q is longer than 128 bytes", c.NodeName)
	}
	bind, err := netip.ParseAddr(c.BindAddr)
	if err != nil {
		return invalid("-bind %q is not an IP address", c.BindAddr)
	}
	adv, err := netip.ParseAddr(c.AdvertiseAddr)
	if err != nil {
		return invalid("-advertise %q is not an IP address", c.AdvertiseAddr)
	}
	if adv.IsUnspecified() {
		if bind.IsUnspecified() {
			return invalid("-bind %s is a wildcard: set -advertise to the address peers reach this node on", c.BindAddr)
		}
		return invalid("-advertise %s is a wildcard address", c.AdvertiseAddr)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"gossip port", c.GossipPort}, {"raft port", c.RaftPort}} {
		if p.v < 1 || p.v > 65535 {
			return invalid("%s %d out of range 1-65535", p.name, p.v)
		}
	}
	if c.GossipPort == c.RaftPort {
		return invalid("gossip and raft ports are both %d", c.GossipPort)
	}
	if c.DataDir == "" && !c.Dev {
		return invalid("-data-dir is required (raft state lives there)")
	}
	if c.BootstrapExpect < 0 {
		return invalid("-bootstrap-expect %d is negative", c.BootstrapExpect)
	}
	if c.Dev && c.BootstrapExpect > 1 {
		return invalid("-dev is a single-node cluster; it conflicts with -bootstrap-expect %d", c.BootstrapExpect)
	}
	if c.EncryptKey != nil {
		if err := memberlist.ValidateKey(c.EncryptKey); err != nil {
			return invalid("-encrypt: key is %d bytes, want 16, 24 or 32", len(c.EncryptKey))
		}
	}
	for _, j := range c.Join {
		if _, err := joinAddr(j, c.GossipPort); err != nil {
			return invalid("-join %q: %v", j, err)
		}
	}
	return validateTimings(c.HeartbeatTimeout, c.ElectionTimeout, c.LeaseTimeout)
}

func validateTimings(hb, el, lease time.Duration) error {
	for _, t := range []struct {
		flag string
		v    time.Duration
	}{{"-raft-heartbeat", hb}, {"-raft-election", el}, {"-raft-lease", lease}} {
		if t.v < MinTimeout {
			return invalid("%s %v is below the minimum %v", t.flag, t.v, MinTimeout)
		}
	}
	if lease > hb {
		return invalid("-raft-lease %v must not exceed -raft-heartbeat %v (the old leader must step down before a follower may start an election)", lease, hb)
	}
	if hb > el {
		return invalid("-raft-heartbeat %v must not exceed -raft-election %v", hb, el)
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
