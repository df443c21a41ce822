package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

func startErr(t *testing.T, cfg Config) error {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = c.Start(context.Background())
	if err == nil {
		c.Shutdown()
	}
	return err
}

func TestStartBadInput(t *testing.T) {
	ip := randomNet() + "1"
	base := func(t *testing.T) Config {
		return Config{NodeName: "a", BindAddr: ip, DataDir: t.TempDir(), EncryptKey: testKey,
			Logger: testutil.NewLogSink(t).Logger(slog.LevelInfo)}
	}
	t.Run("data dir under a file", func(t *testing.T) {
		cfg := base(t)
		f := filepath.Join(cfg.DataDir, "file")
		os.WriteFile(f, []byte("x"), 0o600)
		cfg.DataDir = filepath.Join(f, "sub")
		if err := startErr(t, cfg); err == nil {
			t.Fatal("started with an unusable data dir")
		} else {
			t.Log(err)
		}
	})
	t.Run("corrupt raft.db", func(t *testing.T) {
		cfg := base(t)
		junk := make([]byte, 64<<10)
		rand.Read(junk)
		db := filepath.Join(cfg.DataDir, raftDBFile)
		if err := os.WriteFile(db, junk, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := startErr(t, cfg); err == nil {
			t.Fatal("started with a corrupt raft.db")
		} else {
			t.Log(err)
		}
		if b, _ := os.ReadFile(db); string(b) != string(junk) {
			t.Error("corrupt raft.db was modified (data must not be lost)")
		}
	})
	t.Run("corrupt keyring", func(t *testing.T) {
		cfg := base(t)
		path := filepath.Join(cfg.DataDir, keyringFile)
		if err := os.WriteFile(path, []byte(`{"keys":["c2hvcnQ="],"primary":"c2hvcnQ="}`), 0o600); err != nil {
			t.Fatal(err)
		}
		err := startErr(t, cfg)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("started with a corrupt keyring: %v", err)
		}
		t.Log(err)
	})
	t.Run("bind address not on this host", func(t *testing.T) {
		cfg := base(t)
		cfg.BindAddr = "192.0.2.1" // TEST-NET-1: never local; listen fails before any packet is sent
		err := startErr(t, cfg)
		if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Fatalf("err = %v, want EADDRNOTAVAIL", err)
		}
		t.Log(err)
	})
	t.Run("port in use", func(t *testing.T) {
		cfg := base(t)
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer c.Shutdown()
		cfg2 := base(t)
		if err := startErr(t, cfg2); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("err = %v, want EADDRINUSE", err)
		}
	})
	t.Run("second Start", func(t *testing.T) {
		c, err := New(base(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer c.Shutdown()
		if err := c.Start(context.Background()); !errors.Is(err, ErrStarted) {
			t.Errorf("second Start: %v", err)
		}
	})
}

// TestDev runs a single-node cluster with its data in a temporary directory that Shutdown removes.
func TestDev(t *testing.T) {
	c, err := New(Config{NodeName: "dev", BindAddr: randomNet() + "1", Dev: true, Logger: testutil.NewLogSink(t).Logger(slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch, cancel := c.WatchLeadership()
	defer cancel()
	testutil.WaitFor(t, 3*time.Second, "dev node leads", func() bool { return c.IsLeader() })
	testutil.WaitFor(t, time.Second, "watch says leader", func() bool {
		select {
		case v := <-ch:
			return v.Leader
		default:
			return false
		}
	})
	if err := c.Barrier(context.Background()); err != nil {
		t.Errorf("barrier: %v", err)
	}
	c.UpdateMeta(func(m *Meta) { m.Healthy, m.HealthyBackends, m.TotalBackends, m.RaftAddr = true, 3, 3, "bogus" })
	ms := c.Members()
	if len(ms) != 1 || !ms[0].Leader || ms[0].Role != RoleLeader || !ms[0].Meta.Healthy || ms[0].Meta.RaftAddr != c.raftAddr {
		t.Errorf("members = %+v", ms)
	}
	dir := c.dataDir
	if err := c.Leave(context.Background()); err != nil {
		t.Errorf("leave: %v", err)
	}
	if v := <-ch; v.Leader {
		t.Error("watch still says leader after Leave")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dev data dir %s not removed: %v", dir, err)
	}
}

// TestWrongGossipKey: a node with a different -encrypt key is refused, says why, and does not disturb the
// cluster.
func TestWrongGossipKey(t *testing.T) {
	key := func(b byte) []byte { k := make([]byte, 16); k[0] = b; return k }
	tc := makeCluster(t, 4, false, func(i int, cfg *Config) {
		cfg.BootstrapExpect = 3
		cfg.EncryptKey = key(1)
		if i == 3 {
			cfg.EncryptKey = key(2)
			cfg.BootstrapExpect = 0
		}
	})
	for i := range 3 {
		tc.start(i)
	}
	leader := tc.stable(0, 1, 2)
	tc.start(3)
	bad := tc.nodes[3]
	testutil.WaitFor(t, 5*time.Second, "bad node logs a key hint", func() bool { return bad.logs.Contains("gossip key mismatch?") })
	if bad.c.Status().Joined {
		t.Error("node with the wrong key joined")
	}
	for _, m := range tc.nodes[leader].c.Members() {
		if m.Name == bad.cfg.NodeName {
			t.Errorf("cluster admitted the wrong-key node: %+v", m)
		}
	}
	if got := tc.leaders(); len(got) != 1 || got[0] != leader {
		t.Errorf("leaders = %v, want [%d]", got, leader)
	}
}

// TestDuplicateName: a newcomer using an existing node's name is told so and stops gossiping; the running
// node keeps its name, address and raft seat.
func TestDuplicateName(t *testing.T) {
	tc := makeCluster(t, 4, false, func(i int, cfg *Config) {
		cfg.BootstrapExpect = 3
		if i == 3 {
			cfg.NodeName = "n2"
			cfg.BootstrapExpect = 0
		}
	})
	for i := range 3 {
		tc.start(i)
	}
	leader := tc.stable(0, 1, 2)
	tc.start(3)
	dup := tc.nodes[3]
	testutil.WaitFor(t, 5*time.Second, "duplicate reported", func() bool { return dup.c.Status().Problem != "" })
	t.Logf("problem: %s", dup.c.Status().Problem)
	// Give gossip a few rounds to (wrongly) spread the impostor, then check nothing changed.
	consistently(t, time.Second, "the real n2 stays", func() error {
		for _, m := range tc.nodes[leader].c.Members() {
			if m.Name == "n2" && m.Addr != fmt.Sprintf("%s:%d", tc.nodes[1].ip, DefaultGossipPort) {
				return fmt.Errorf("n2's address changed to the impostor's: %+v", m)
			}
			if m.Name == "n2" && m.Status != StatusAlive {
				return fmt.Errorf("n2 marked %s because of the impostor", m.Status)
			}
		}
		return nil
	})
	if st := tc.nodes[1].c.Status(); len(tc.voters(leader)) != 3 || st.LeaderName == "" || st.Problem != "" {
		t.Errorf("the real n2 was disturbed: voters %v, status %+v", tc.voters(leader), st)
	}
}
