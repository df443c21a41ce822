package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"time"
)

// SecurityMode is how a node authenticates its peers; Status, Members and gossip report it.
type SecurityMode string

// Security modes.
const (
	// ModeMTLS: Raft and gossip over mutual TLS 1.3; a peer's certificate, signed by the cluster CA, names it.
	ModeMTLS SecurityMode = "mtls"
	// ModeKey: a shared cluster key encrypts and authenticates gossip (memberlist's AES-GCM keyring) and
	// authenticates Raft connections (TLS 1.3 plus a key proof bound to the connection).
	ModeKey SecurityMode = "key"
	// ModeMTLSKey: both; Raft connections need a valid certificate and the key, gossip uses the key.
	ModeMTLSKey SecurityMode = "mtls+key"
	// ModeInsecure: no authentication at all (Config.Insecure).
	ModeInsecure SecurityMode = "insecure"
)

// insecureWarnEvery repeats the insecure-mode warning, so it is in any recent log an operator reads.
const insecureWarnEvery = time.Hour

// securityOf is the mode a validated config selects; key reports whether it has (or, for Dev, will make) a key.
func securityOf(cfg Config) SecurityMode {
	hasKey := cfg.EncryptKey != nil
	switch {
	case cfg.Insecure:
		return ModeInsecure
	case tlsSet(cfg.TLS) && hasKey:
		return ModeMTLSKey
	case tlsSet(cfg.TLS):
		return ModeMTLS
	}
	return ModeKey // with a key, or Dev (which makes one)
}

// resolveKey reads EncryptFile into EncryptKey and, for a Dev node with no security configured, makes a
// throw-away key so that even a dev node answers nobody else.
func resolveKey(cfg *Config) (devKey bool, err error) {
	if cfg.EncryptFile != "" {
		k, err := ReadKeyFile(cfg.EncryptFile)
		if err != nil {
			return false, invalid("EncryptFile", "%v", err)
		}
		cfg.EncryptKey = k
	}
	if cfg.Dev && !cfg.Insecure && cfg.EncryptKey == nil && !tlsSet(cfg.TLS) {
		k := make([]byte, 32)
		rand.Read(k) // never fails (crypto/rand)
		cfg.EncryptKey = k
		return true, nil
	}
	return false, nil
}

// buildAuth makes the Raft handshake of this node's mode. Called by Start, after the keyring is loaded.
func (c *Cluster) buildAuth(now time.Time) (*peerAuth, error) {
	a := &peerAuth{mode: c.mode, name: c.cfg.NodeName}
	if c.keys != nil {
		a.keys = c.keys.keys
	}
	switch c.mode {
	case ModeInsecure:
		return a, nil
	case ModeKey:
		srv, cli, err := ephemeralTLS(now)
		if err != nil {
			return nil, err
		}
		a.serverTLS = func() *tls.Config { return srv }
		a.clientTLS = func() *tls.Config { return cli }
		return a, nil
	case ModeMTLS, ModeMTLSKey:
		if c.certs == nil {
			return nil, fmt.Errorf("mutual TLS: no certificates loaded")
		}
		a.serverTLS = c.certs.ServerConfig
		a.clientTLS = c.certs.ClientConfig
		a.peerNames = c.certs.PeerNames
		return a, nil
	}
	return nil, fmt.Errorf("unknown security mode %q", c.mode)
}

// warnInsecure logs at start and every insecureWarnEvery until ctx ends that this node trusts its network.
func (c *Cluster) warnInsecure(ctx context.Context) {
	t := time.NewTicker(insecureWarnEvery)
	defer t.Stop()
	for {
		c.log.Warn("INSECURE: this node runs without a cluster key or mutual TLS: anyone who reaches the gossip and Raft ports can join, vote, read the Raft term and move the VIP; give a cluster key file or TLS certificates")
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
