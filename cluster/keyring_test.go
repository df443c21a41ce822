package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/rogue"
	"github.com/vipd/vipd/internal/testutil"
)

// keyringEverywhere waits until every node's keyring and every gossiped view of it are keys with primary.
func (tc *tcluster) keyringEverywhere(keys []string, primary string) {
	tc.t.Helper()
	slices.Sort(keys)
	for i, nd := range tc.nodes {
		testutil.WaitFor(tc.t, 10*time.Second, "keyring everywhere", func() bool {
			st, err := nd.c.Keyring()
			if err != nil || !slices.Equal(st.Keys, keys) || st.Primary != primary || len(st.Members) != len(tc.nodes) {
				return false
			}
			for _, m := range st.Members {
				if !slices.Equal(m.Keys, keys) || m.Primary != primary {
					return false
				}
			}
			_ = i
			return true
		})
	}
}

// TestKeyRotation rotates the cluster key while the cluster runs (install on a follower, which forwards to
// the leader; use; remove), as Consul's keyring procedure does: no leadership change, the old key is refused
// afterwards and the new one accepted, every node persisted the keyring, and a node restarted with the old
// key still in its configuration comes back with the rotated keyring.
func TestKeyRotation(t *testing.T) {
	tc := makeCluster(t, 3, true, calmOpt) // it asserts that no rotation step moves leadership
	leader := tc.stable()
	changed := tc.watchAll()
	term := tc.nodes[leader].c.Status().Term
	follower := (leader + 1) % 3
	oldKey, newKey := testKey, []byte("the-rotated-cluster-key-32-bytes")
	oldFP, newFP := KeyFingerprint(oldKey), KeyFingerprint(newKey)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := tc.nodes[follower].c.InstallKey(ctx, newKey); err != nil {
		t.Fatalf("install on a follower: %v", err)
	}
	tc.keyringEverywhere([]string{oldFP, newFP}, oldFP)
	if err := tc.nodes[follower].c.RemoveKey(ctx, oldKey); !errors.Is(err, ErrKeyringUnsafe) {
		t.Errorf("removing the primary: err = %v, want ErrKeyringUnsafe (forwarded)", err)
	}
	if err := tc.nodes[leader].c.UseKey(ctx, newKey); err != nil {
		t.Fatalf("use: %v", err)
	}
	tc.keyringEverywhere([]string{oldFP, newFP}, newFP)
	if err := tc.nodes[(leader+2)%3].c.RemoveKey(ctx, oldKey); err != nil {
		t.Fatalf("remove on a follower: %v", err)
	}
	tc.keyringEverywhere([]string{newFP}, newFP)

	if st := tc.nodes[leader].c.Status(); !tc.nodes[leader].c.IsLeader() || st.Term != term {
		t.Errorf("rotation moved leadership: leader n%d still leads %v, term %d -> %d", leader+1, tc.nodes[leader].c.IsLeader(), term, st.Term)
	}
	changed()

	// New connections: the old key is refused, the new one accepted.
	addr := tc.nodes[follower].c.raftAddr
	old := &rogue.Attacker{Dialer: rogue.Dialer{Handshake: rogue.KeyProofHandshake("holder", oldKey), Timeout: time.Second}, ID: "holder"}
	if r := old.Probe(addr); r.Err == nil || r.Learned() {
		t.Errorf("the removed key still authenticates: %+v", r)
	}
	cur := &rogue.Attacker{Dialer: rogue.Dialer{Handshake: rogue.KeyProofHandshake("holder", newKey), Timeout: time.Second}, ID: "holder"}
	if r := cur.Probe(addr); r.Err != nil || r.Term != term {
		t.Errorf("the new key does not authenticate: %+v", r)
	}
	for i, nd := range tc.nodes {
		if got := nd.c.keys.memberlist().GetPrimaryKey(); !bytes.Equal(got, newKey) || len(nd.c.keys.memberlist().GetKeys()) != 1 {
			t.Errorf("n%d gossip keyring not rotated", i+1)
		}
		path := filepath.Join(nd.cfg.DataDir, keyringFile)
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("n%d keyring file: %v, mode %v", i+1, err, fi.Mode())
		}
		b, _ := os.ReadFile(path)
		var st keyringState
		if err := json.Unmarshal(b, &st); err != nil || len(st.Keys) != 1 || !bytes.Equal(st.Primary, newKey) {
			t.Errorf("n%d keyring file holds %s, %v", i+1, b, err)
		}
	}

	// A restart keeps the rotated keyring although the configuration still names the old key.
	tc.kill(follower)
	tc.nodes[follower].logs = testutil.NewLogSink(t)
	tc.nodes[follower].cfg.Logger = tc.nodes[follower].logs.Logger(0)
	tc.start(follower)
	testutil.WaitFor(t, 10*time.Second, "restarted node follows", func() bool {
		st := tc.nodes[follower].c.Status()
		return st.Role == RoleFollower && st.LeaderName == tc.nodes[leader].cfg.NodeName
	})
	if !tc.nodes[follower].logs.ContainsLine("configured cluster key is not in this node's keyring", oldFP, newFP) {
		t.Error("restarted node did not warn that its configured key is not in its keyring")
	}
	tc.keyringEverywhere([]string{newFP}, newFP)
	if !tc.nodes[leader].c.IsLeader() {
		t.Error("leader changed across the follower's restart")
	}
}

// TestKeyringRefusesUnsafeSteps: use of a key not installed, removal of the primary, use while an alive
// member does not gossip the key, and removal while an alive member still uses it are refused; a mode
// without a key has no keyring.
func TestKeyringRefusesUnsafeSteps(t *testing.T) {
	tc := makeCluster(t, 1, true)
	tc.stable()
	c := tc.nodes[0].c
	ctx := context.Background()
	other := []byte("another-cluster-key-of-32-bytes!")
	if err := c.UseKey(ctx, other); !errors.Is(err, ErrKeyringUnsafe) {
		t.Errorf("use of a key not installed: %v", err)
	}
	if err := c.RemoveKey(ctx, testKey); !errors.Is(err, ErrKeyringUnsafe) {
		t.Errorf("remove of the primary: %v", err)
	}
	if err := c.InstallKey(ctx, []byte("short")); err == nil {
		t.Error("installed a 5-byte key")
	}
	if err := c.InstallKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	// A member gossip lists alive, whose keyring lacks the new key and whose primary is the old one.
	c.members.mu.Lock()
	c.members.nodes["ghost"] = &memberRecord{name: "ghost", status: StatusAlive, heard: time.Now(),
		meta: wireMeta{KeyFPs: []string{KeyFingerprint(testKey)}, PrimaryFP: KeyFingerprint(testKey)}}
	c.members.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := c.UseKey(short, other); !errors.Is(err, ErrKeyringUnsafe) {
		t.Errorf("use while ghost lacks the key: %v", err)
	}
	c.members.mu.Lock()
	c.members.nodes["ghost"].meta.KeyFPs = append(c.members.nodes["ghost"].meta.KeyFPs, KeyFingerprint(other))
	c.members.mu.Unlock()
	if err := c.UseKey(ctx, other); err != nil {
		t.Fatalf("use once ghost has the key: %v", err)
	}
	short2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if err := c.RemoveKey(short2, testKey); !errors.Is(err, ErrKeyringUnsafe) {
		t.Errorf("remove while ghost still uses the key: %v", err)
	}
	c.members.forget("ghost")
	if err := c.RemoveKey(ctx, testKey); err != nil {
		t.Errorf("remove once no member uses the key: %v", err)
	}

	in := makeCluster(t, 1, true, insecureOpt)
	in.stable()
	if err := in.nodes[0].c.InstallKey(ctx, other); !errors.Is(err, ErrNoKeyring) {
		t.Errorf("install on an insecure node: %v", err)
	}
	if _, err := in.nodes[0].c.Keyring(); !errors.Is(err, ErrNoKeyring) {
		t.Errorf("keyring of an insecure node: %v", err)
	}
}
