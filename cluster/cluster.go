package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Sentinel errors.
var (
	// ErrNotStarted is returned by operations that need a running node.
	ErrNotStarted = errors.New("cluster not started")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("cluster already started")
	// ErrNotLeader is returned by leader-only operations on a follower; the error text names the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrUnknownNode is returned when a named node is not a member / raft server.
	ErrUnknownNode = errors.New("unknown node")
	// ErrQuorum is returned by ForceLeave when removing the node would leave the alive voters without quorum.
	ErrQuorum = errors.New("would break quorum")
	// ErrNoLeaseProof is returned by VerifyLeader when raft confirmed leadership but no quorum has
	// acknowledged a heartbeat of the current term (a new term began, or the acknowledgements are missing).
	ErrNoLeaseProof = errors.New("no quorum acknowledgement in this term")
	// ErrDuplicateName is reported (Status().Problem, logs) when another live node already uses -node.
	ErrDuplicateName = errors.New("duplicate node name")
)

const (
	raftDBFile        = "raft.db"
	snapshotsRetain   = 2
	boltOpenTimeout   = time.Second
	raftRPCTimeout    = 2 * time.Second
	maxVoters         = 5
	reconcileEvery    = 500 * time.Millisecond
	metaBroadcastWait = 250 * time.Millisecond // UpdateNode waits at most this for the broadcast to go out
)

// Cluster is one node's membership in the vipd cluster. Its methods are safe for concurrent use.
type Cluster struct {
	cfg Config
	log *slog.Logger

	metaMu sync.Mutex
	meta   wireMeta
	metaB  []byte

	mode    SecurityMode
	certs   certSource // mutual TLS; nil without
	members *memberTable
	leaders *fanout
	fsm     *fsm
	admit   *admissions
	refused *rateLog   // refused Raft connections and RPCs
	keyOpMu sync.Mutex // one keyring operation at a time on the leader
	// verifyMu: VerifyLeader holds it shared from asking raft until raft answered; Shutdown holds it
	// exclusively while raft stops, so no VerifyLeader future is left unanswered (and its goroutine stuck)
	// by a shutdown.
	verifyMu   sync.RWMutex
	foreign    atomic.Pointer[foreignPeer] // last node refused for another cluster ID
	foreignLog refusals
	kick       chan struct{} // cap 1: membership changed, reconcile/bootstrap now

	// Set by Start, read-only afterwards.
	rft      atomic.Pointer[raft.Raft]
	mlist    atomic.Pointer[memberlist.Memberlist]
	keys     *keyring // the cluster keyring; nil without a key
	auth     *peerAuth
	trans    *raftTransport
	store    *raftboltdb.BoltStore
	dataDir  string
	tmpDir   string
	raftAddr string

	devKey bool // New made a throw-away key for a Dev node; Start says so (New logs nothing)

	started  atomic.Bool
	joined   atomic.Bool
	problem  atomic.Pointer[string]
	leaving  atomic.Bool
	stopped  atomic.Bool
	stopOnce sync.Once
	stopErr  error
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New validates cfg and returns a node that Start brings up. It starts nothing.
func New(cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	devKey, err := resolveKey(&cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.NodeName),
		mode:    securityOf(cfg),
		members: newMemberTable(),
		leaders: newFanout(),
		admit:   newAdmissions(),
		kick:    make(chan struct{}, 1),
		devKey:  devKey,
	}
	if tlsSet(cfg.TLS) {
		if c.certs, err = loadCerts(cfg); err != nil {
			return nil, err
		}
	}
	c.refused = newRateLog(c.log, refusalLogEvery, time.Now)
	c.fsm = newFSM(c.learnClusterID, c.learnKeyring)
	c.raftAddr = net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(cfg.RaftPort))
	c.meta = wireMeta{Meta: Meta{RaftAddr: c.raftAddr, Version: cfg.Version}, Bootstrap: cfg.BootstrapExpect, Security: c.mode}
	if cfg.Dev {
		c.meta.Bootstrap = 1
	}
	b, err := encodeMeta(c.meta)
	if err != nil {
		return nil, err
	}
	c.metaB = b
	return c, nil
}

// Start opens the data dir and starts raft, memberlist and the join, gossip reconnect, bootstrap/reconcile and
// leadership loops.
// ctx bounds those loops; call Leave or Shutdown to stop the node. On error everything opened is closed.
func (c *Cluster) Start(ctx context.Context) (err error) {
	if !c.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	if c.devKey {
		c.log.Info("dev node: made a throw-away cluster key, so no other node can talk to it")
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	c.dataDir = c.cfg.DataDir
	if c.dataDir == "" { // Dev only (validated)
		dir, err := os.MkdirTemp("", "vipd-dev-")
		if err != nil {
			return fmt.Errorf("create temporary data dir for -dev: %w", err)
		}
		c.dataDir, c.tmpDir = dir, dir
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", c.dataDir, err)
	}
	if c.cfg.EncryptKey != nil {
		// Before anything listens: the persisted keyring decides which keys this node proves and accepts.
		kr, err := loadKeyring(c.dataDir, c.cfg.EncryptKey, c.log)
		if err != nil {
			return err
		}
		c.keys = kr
		fps, primary := kr.state().fingerprints()
		c.setInternal(func(m *wireMeta) { m.KeyFPs, m.PrimaryFP = fps, primary })
	}
	auth, err := c.buildAuth(time.Now())
	if err != nil {
		return err
	}
	c.auth = auth

	id, err := readClusterID(c.dataDir)
	if err != nil {
		return err
	}
	if id != "" {
		c.setInternal(func(m *wireMeta) { m.ClusterID = id })
	}

	hlog := newHclog(c.log, "raft")
	dbPath := filepath.Join(c.dataDir, raftDBFile)
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout}})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return fmt.Errorf("open raft log %s: locked by another process (is another vipd using this -data-dir?): %w", dbPath, err)
		}
		return fmt.Errorf("open raft log %s (unwritable or corrupt? move it aside and rejoin, or restore a backup): %w", dbPath, err)
	}
	c.store = store
	cleanup = append(cleanup, func() { store.Close() })

	snaps, err := raft.NewFileSnapshotStoreWithLogger(c.dataDir, snapshotsRetain, hlog.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("open raft snapshots in %s: %w", c.dataDir, err)
	}
	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state in %s (corrupt?): %w", dbPath, err)
	}

	adv, err := net.ResolveTCPAddr("tcp", c.raftAddr)
	if err != nil {
		return fmt.Errorf("raft advertise address %s: %w", c.raftAddr, err)
	}
	trans, err := newRaftTransport(raftBind(c.cfg), adv, c.auth, c.cfg.Partition.filter(), c.localAddr(),
		c.log, hlog, c.refused, c.serveOp)
	if err != nil {
		return err
	}
	c.trans = trans
	cleanup = append(cleanup, func() { trans.Close() })

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.NodeName)
	rc.HeartbeatTimeout = c.cfg.HeartbeatTimeout
	rc.ElectionTimeout = c.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = c.cfg.LeaseTimeout
	rc.Logger = hlog
	// The leave path removes the node itself; a node removed while running (e.g. force-leave of a node that
	// was only partitioned) stays up as a non-voter so the leader can add it back when it reappears.
	rc.ShutdownOnRemove = false
	notify := make(chan bool, 1)
	rc.NotifyCh = notify
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}

	if c.cfg.Dev && !hasState {
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(c.raftAddr)}}}
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, boot); err != nil {
			return fmt.Errorf("bootstrap -dev cluster: %w", err)
		}
		hasState = true
	}
	r, err := raft.NewRaft(rc, c.fsm, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	c.rft.Store(r)
	cleanup = append(cleanup, func() { r.Shutdown().Error() })
	if hasState {
		c.setInternal(func(m *wireMeta) { m.HasState = true })
	}

	ml, err := c.startMemberlist()
	if err != nil {
		return err
	}
	c.mlist.Store(ml)

	ctx, c.cancel = context.WithCancel(ctx)
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.leaders.run(notify, r.CurrentTerm) }()
	go func() { defer c.wg.Done(); c.maintain(ctx) }()
	go func() { defer c.wg.Done(); c.reconnectLoop(ctx) }()
	if len(c.cfg.Join) > 0 {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.joinLoop(ctx) }()
	} else {
		c.joined.Store(true)
	}
	if c.mode == ModeInsecure {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.warnInsecure(ctx) }()
	}
	c.log.Info("cluster node started", "raft", c.raftAddr, "gossip", c.gossipAddr(), "security", c.mode,
		"data_dir", c.dataDir, "existing_state", hasState, "bootstrap_expect", c.cfg.BootstrapExpect)
	return nil
}

// listenErr explains the usual causes of a listen failure.
func listenErr(what, addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%s listen on %s: address not on this host (check -bind/-advertise): %w", what, addr, err)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%s listen on %s: port in use (another vipd running?): %w", what, addr, err)
	}
	return fmt.Errorf("%s listen on %s: %w", what, addr, err)
}

// localAddr is the source address of Raft dials when a Partition filters them, so peers see this node's IP.
func (c *Cluster) localAddr() *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(c.cfg.BindAddr)} }

// Shutdown stops the node abruptly, as a crash would (no leadership transfer, no gossip leave). It returns when
// every goroutine Start started has ended; watchers of WatchLeadership see false. Safe to call more than once.
func (c *Cluster) Shutdown() error {
	r, ml := c.rft.Load(), c.mlist.Load()
	if r == nil || ml == nil || c.cancel == nil {
		return nil
	}
	c.stopOnce.Do(func() {
		c.stopped.Store(true)
		c.cancel()
		var errs []error
		// No VerifyLeader may be under way while raft stops (see VerifyLeader): this waits for the
		// verifications raft has yet to answer, and later ones see stopped.
		c.verifyMu.Lock()
		err := r.Shutdown().Error()
		c.verifyMu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		// Only now may the NotifyCh reader stop: raft blocks on NotifyCh until its shutdown.
		close(c.leaders.stop)
		if err := ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("memberlist shutdown: %w", err))
		}
		c.wg.Wait()
		c.leaders.publish(false, 0)
		if err := c.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
		if c.tmpDir != "" {
			os.RemoveAll(c.tmpDir)
		}
		c.stopErr = errors.Join(errs...)
		c.log.Info("cluster node stopped")
	})
	return c.stopErr
}

// setInternal updates the coordination fields of this node's metadata and re-gossips it.
func (c *Cluster) setInternal(f func(*wireMeta)) {
	c.updateMeta(f)
}

// UpdateMeta changes this node's gossiped metadata (health, VIP state, ...) and broadcasts it at once. RaftAddr
// is owned by the cluster and reset if f changes it. An update that would not fit memberlist's 512-byte limit
// is logged and dropped.
func (c *Cluster) UpdateMeta(f func(*Meta)) {
	c.updateMeta(func(m *wireMeta) {
		f(&m.Meta)
		m.RaftAddr = c.raftAddr
	})
}

func (c *Cluster) updateMeta(f func(*wireMeta)) {
	c.metaMu.Lock()
	next := c.meta
	f(&next)
	b, err := encodeMeta(next)
	if err != nil {
		c.metaMu.Unlock()
		c.log.Error("node metadata update dropped", "err", err)
		return
	}
	c.meta, c.metaB = next, b
	c.metaMu.Unlock()
	if ml := c.memberlist(); ml != nil && !c.stopped.Load() {
		if err := ml.UpdateNode(metaBroadcastWait); err != nil {
			c.log.Warn("gossip node metadata", "err", err)
		}
	}
}

// memberlist returns the running memberlist or nil before Start.
func (c *Cluster) memberlist() *memberlist.Memberlist { return c.mlist.Load() }

func (c *Cluster) localMeta() wireMeta {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	return c.meta
}

func (c *Cluster) kickNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Cluster) setProblem(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.problem.Store(&s)
}
