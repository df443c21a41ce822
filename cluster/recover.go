package cluster

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Peer names one server of a recovered configuration: its node name (raft ID) and raft address host:port.
type Peer struct {
	Name, Addr string
}

// ErrInvalidPeers is wrapped by ParsePeer's and Recover's validation errors. It wraps ErrInvalidConfig, so
// a caller that treats configuration errors as usage errors treats these alike.
var ErrInvalidPeers = fmt.Errorf("%w: recover peers", ErrInvalidConfig)

// ParsePeer parses one `vipd recover -peer` value, NODE=IP:PORT, and checks it as Recover does.
func ParsePeer(s string) (Peer, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok || name == "" || addr == "" {
		return Peer{}, fmt.Errorf("%w: %q: want NODE=IP:PORT, e.g. lb1=10.0.0.11:7947", ErrInvalidPeers, s)
	}
	p := Peer{Name: name, Addr: addr}
	if err := checkPeer(p); err != nil {
		return Peer{}, err
	}
	return p, nil
}

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
	if err := raft.RecoverCluster(conf, newFSM(nil, nil), store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
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
		if err := checkPeer(p); err != nil {
			return err
		}
		ap, _ := netip.ParseAddrPort(p.Addr) // checked
		if names[p.Name] {
			return fmt.Errorf("%w: peer name %s given twice", ErrInvalidPeers, p.Name)
		}
		if addrs[ap.String()] {
			return fmt.Errorf("%w: peer address %s given twice", ErrInvalidPeers, p.Addr)
		}
		names[p.Name], addrs[ap.String()] = true, true
	}
	return nil
}

// checkPeer checks one peer: a valid node name and an IP:port Raft address (a host name would be resolved
// differently by each node, and raft compares addresses as strings).
func checkPeer(p Peer) error {
	if p.Name == "" {
		return fmt.Errorf("%w: peer with address %q has no name", ErrInvalidPeers, p.Addr)
	}
	if !ValidNodeName(p.Name) {
		return fmt.Errorf("%w: peer name %q: use 1-%d characters from A-Z a-z 0-9 . _ -", ErrInvalidPeers, p.Name, maxNodeName)
	}
	ap, err := netip.ParseAddrPort(p.Addr)
	if err != nil {
		return fmt.Errorf("%w: peer %s address %q is not IP:PORT", ErrInvalidPeers, p.Name, p.Addr)
	}
	if ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "" {
		return fmt.Errorf("%w: peer %s address %q needs a specific IP (no zone) and a port 1-65535", ErrInvalidPeers, p.Name, p.Addr)
	}
	return nil
}
