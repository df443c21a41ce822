package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Peer names one server of a recovered configuration: its node name (raft ID) and raft address host:port.
type Peer struct {
	Name, Addr string
}

// ErrInvalidPeers is wrapped by Recover's validation errors.
var ErrInvalidPeers = errors.New("invalid recover peers")

// Recover rewrites the raft configuration stored in dataDir to exactly peers (hashicorp/raft's
// RecoverCluster): the runbook when a majority of nodes is lost for good. Run it, offline, on every surviving
// node with the same peers, then start them again. The node must not be running (its raft.db is locked). The
// cluster ID survives (the real FSM replays the log into the snapshot that replaces it).
func Recover(dataDir string, peers []Peer) error {
	if err := validatePeers(peers); err != nil {
		return err
	}
	dbPath := filepath.Join(dataDir, raftDBFile)
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("recover %s: no raft state here: %w", dataDir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout}})
	if err != nil {
		return fmt.Errorf("recover: open %s (is vipd still running?): %w", dbPath, err)
	}
	defer store.Close()
	hlog := newHclog(slog.New(slog.DiscardHandler), "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, snapshotsRetain, hlog)
	if err != nil {
		return fmt.Errorf("recover: open snapshots in %s: %w", dataDir, err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(peers[0].Name) // only validated, never used to communicate
	conf.Logger = hlog
	var servers []raft.Server
	for _, p := range peers {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.Addr)})
	}
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	if err := raft.RecoverCluster(conf, newFSM(nil), store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		return fmt.Errorf("recover %s: %w", dataDir, err)
	}
	return nil
}

func validatePeers(peers []Peer) error {
	if len(peers) == 0 {
		return fmt.Errorf("%w: at least one -peer NODE=ADDR is required", ErrInvalidPeers)
	}
	names, addrs := map[string]bool{}, map[string]bool{}
	for _, p := range peers {
		if p.Name == "" {
			return fmt.Errorf("%w: peer with address %q has no name", ErrInvalidPeers, p.Addr)
		}
		host, port, err := net.SplitHostPort(p.Addr)
		if err != nil || host == "" {
			return fmt.Errorf("%w: peer %s address %q is not host:port", ErrInvalidPeers, p.Name, p.Addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: peer %s address %q has a bad port", ErrInvalidPeers, p.Name, p.Addr)
		}
		if names[p.Name] {
			return fmt.Errorf("%w: peer name %s given twice", ErrInvalidPeers, p.Name)
		}
		if addrs[p.Addr] {
			return fmt.Errorf("%w: peer address %s given twice", ErrInvalidPeers, p.Addr)
		}
		names[p.Name], addrs[p.Addr] = true, true
	}
	return nil
}
