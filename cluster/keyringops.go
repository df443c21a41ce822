package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// ErrNoKeyring is returned by the keyring operations on a node without a cluster key (mTLS only, or
// insecure).
var ErrNoKeyring = errors.New("this node has no cluster key, so no keyring")

// ErrKeyringUnsafe is returned when a keyring step would cut members off: using a key that an alive member
// has not installed, or removing the primary key of an alive member.
var ErrKeyringUnsafe = errors.New("unsafe keyring change")

// keyringConverge bounds how long the leader waits for every alive member to gossip the fingerprints a
// step needs (a key just installed reaches gossip within a broadcast round or two).
const keyringConverge = 5 * time.Second

// Keyring operations, as forwarded to the leader.
const (
	opInstall = "install"
	opUse     = "use"
	opRemove  = "remove"
)

// opRequest is vipd's own request on the Raft port (rpcVipdOp): a keyring operation forwarded by a follower
// to the leader. It travels only over an authenticated connection.
type opRequest struct {
	Op  string
	Key []byte
}

// opResponse answers an opRequest (the error text travels beside it, as in raft's responses; Code names
// the sentinel the error wrapped, so errors.Is works across the forward).
type opResponse struct {
	Keys []string
	Code string
}

// opCodes are the sentinels a forwarded operation's error may carry.
var opCodes = map[string]error{
	"unsafe":     ErrKeyringUnsafe,
	"not-leader": ErrNotLeader,
	"no-keyring": ErrNoKeyring,
	"bad-key":    ErrBadKey,
}

func opCode(err error) string {
	for code, sentinel := range opCodes {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return ""
}

// remoteError is an error returned by the leader for a forwarded operation.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// KeyringStatus is the keyring as this node sees it: its own keys and what every member gossips.
type KeyringStatus struct {
	// Keys are the fingerprints (KeyFingerprint) of this node's installed keys, sorted; Primary is the one
	// that encrypts its gossip.
	Keys    []string
	Primary string
	// Members lists what each known member gossips about its keyring, sorted by name.
	Members []MemberKeys
}

// MemberKeys is one member's gossiped keyring.
type MemberKeys struct {
	Name    string
	Status  MemberStatus
	Keys    []string
	Primary string
}

// Keyring reports this node's keyring and every member's gossiped fingerprints.
func (c *Cluster) Keyring() (KeyringStatus, error) {
	if c.keys == nil {
		return KeyringStatus{}, ErrNoKeyring
	}
	var st KeyringStatus
	st.Keys, st.Primary = c.keys.state().fingerprints()
	for _, m := range c.members.snapshot() {
		mk := MemberKeys{Name: m.name, Status: m.status, Keys: m.meta.KeyFPs, Primary: m.meta.PrimaryFP}
		if m.name == c.cfg.NodeName {
			mk.Status, mk.Keys, mk.Primary = StatusAlive, st.Keys, st.Primary
		}
		st.Members = append(st.Members, mk)
	}
	return st, nil
}

// InstallKey adds key to every node's keyring: accepted from now on, not yet used to encrypt gossip.
// Installing an installed key does nothing. Leader-only in Raft: a follower forwards it to the leader.
func (c *Cluster) InstallKey(ctx context.Context, key []byte) error {
	return c.keyOp(ctx, opInstall, key)
}

// UseKey makes an installed key the primary everywhere. It refuses (ErrKeyringUnsafe) unless every alive
// member gossips that it has the key installed.
func (c *Cluster) UseKey(ctx context.Context, key []byte) error { return c.keyOp(ctx, opUse, key) }

// RemoveKey removes a key from every node's keyring: new Raft connections and gossip proven with it are
// refused from then on. It refuses (ErrKeyringUnsafe) to remove the primary key of this node or of any alive
// member.
func (c *Cluster) RemoveKey(ctx context.Context, key []byte) error {
	return c.keyOp(ctx, opRemove, key)
}

func (c *Cluster) keyOp(ctx context.Context, op string, key []byte) error {
	if c.keys == nil {
		return ErrNoKeyring
	}
	if err := checkKeyLen(key); err != nil {
		return err
	}
	r := c.rft.Load()
	if r == nil || c.stopped.Load() {
		return ErrNotStarted
	}
	if r.State() == raft.Leader {
		_, err := c.leaderKeyOp(ctx, op, key)
		return err
	}
	addr, id := r.LeaderWithID()
	if addr == "" {
		return fmt.Errorf("keyring %s: %w; no leader is known", op, ErrNotLeader)
	}
	if err := c.forwardKeyOp(ctx, string(addr), &opRequest{Op: op, Key: key}); err != nil {
		return fmt.Errorf("keyring %s via leader %s: %w", op, id, err)
	}
	return nil
}

// serveOp is the rpcServer's handler of forwarded requests.
func (c *Cluster) serveOp(from string, req *opRequest) (*opResponse, error) {
	switch req.Op {
	case opInstall, opUse, opRemove:
	default:
		return nil, fmt.Errorf("unknown vipd request %q", req.Op)
	}
	if c.keys == nil {
		return nil, ErrNoKeyring
	}
	if err := checkKeyLen(req.Key); err != nil {
		return nil, err
	}
	r := c.rft.Load()
	if r == nil || r.State() != raft.Leader {
		return nil, fmt.Errorf("keyring %s: %w", req.Op, ErrNotLeader)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*keyringConverge)
	defer cancel()
	c.log.Info("keyring operation forwarded", "op", req.Op, "key", KeyFingerprint(req.Key), "from", from)
	st, err := c.leaderKeyOp(ctx, req.Op, req.Key)
	if err != nil {
		return nil, err
	}
	keys, _ := st.fingerprints()
	return &opResponse{Keys: keys}, nil
}

// leaderKeyOp runs one keyring operation on the leader: barrier (so the keyring reflects every committed
// entry), check, then commit the next keyring.
func (c *Cluster) leaderKeyOp(ctx context.Context, op string, key []byte) (keyringState, error) {
	c.keyOpMu.Lock()
	defer c.keyOpMu.Unlock()
	r := c.rft.Load()
	if err := c.Barrier(ctx); err != nil {
		return keyringState{}, fmt.Errorf("keyring %s: %w", op, err)
	}
	cur := c.keys.state()
	fp := KeyFingerprint(key)
	next := cur.clone()
	switch op {
	case opInstall:
		if cur.has(key) {
			return cur, nil
		}
		if len(cur.Keys) >= maxKeys {
			return cur, fmt.Errorf("keyring install %s: %d keys installed, the most allowed: remove an unused key first", fp, maxKeys)
		}
		for _, k := range cur.Keys {
			if KeyFingerprint(k) == fp {
				return cur, fmt.Errorf("keyring install %s: another installed key has the same fingerprint: make a new key", fp)
			}
		}
		next.Keys = append(next.Keys, bytes.Clone(key))
	case opUse:
		if !cur.has(key) {
			return cur, fmt.Errorf("keyring use %s: %w: not installed; install it first", fp, ErrKeyringUnsafe)
		}
		if bytes.Equal(cur.Primary, key) {
			return cur, nil
		}
		if err := c.waitMembers(ctx, func(m memberRecord) bool { return slices.Contains(m.meta.KeyFPs, fp) }); err != nil {
			return cur, fmt.Errorf("keyring use %s: %w: %v do not have the key installed yet (install it, and check they run)", fp, ErrKeyringUnsafe, err)
		}
		next.Primary = bytes.Clone(key)
	case opRemove:
		if !cur.has(key) {
			return cur, nil
		}
		if bytes.Equal(cur.Primary, key) {
			return cur, fmt.Errorf("keyring remove %s: %w: it is the primary key; use another key first", fp, ErrKeyringUnsafe)
		}
		if err := c.waitMembers(ctx, func(m memberRecord) bool { return m.meta.PrimaryFP != fp }); err != nil {
			return cur, fmt.Errorf("keyring remove %s: %w: it is still the primary key of %v", fp, ErrKeyringUnsafe, err)
		}
		next.Keys = slices.DeleteFunc(next.Keys, func(k []byte) bool { return bytes.Equal(k, key) })
	default:
		return cur, fmt.Errorf("unknown keyring operation %q", op)
	}
	data, err := encodeKeyringCmd(next)
	if err != nil {
		return cur, err
	}
	t, err := opTimeout(ctx)
	if err != nil {
		return cur, err
	}
	f := r.Apply(data, t)
	if err := f.Error(); err != nil {
		return cur, fmt.Errorf("keyring %s %s: commit: %w", op, fp, err)
	}
	if err, ok := f.Response().(error); ok {
		return cur, fmt.Errorf("keyring %s %s: %w", op, fp, err)
	}
	c.log.Info("keyring operation committed", "op", op, "key", fp)
	return c.keys.state(), nil
}

// waitMembers waits (bounded by ctx and keyringConverge) until ok holds for every alive member but this
// node; it returns the names for which it does not.
func (c *Cluster) waitMembers(ctx context.Context, ok func(memberRecord) bool) error {
	ctx, cancel := context.WithTimeout(ctx, keyringConverge)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		var missing []string
		for _, m := range c.members.snapshot() {
			if m.name != c.cfg.NodeName && m.status == StatusAlive && !ok(m) {
				missing = append(missing, m.name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New(strings.Join(missing, ", "))
		case <-t.C:
		}
	}
}

// forwardKeyOp sends req to the leader at addr over an authenticated Raft connection.
func (c *Cluster) forwardKeyOp(ctx context.Context, addr string, req *opRequest) error {
	t, err := opTimeout(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(t)
	dctx, cancel := context.WithTimeout(ctx, min(t, raftRPCTimeout))
	defer cancel()
	conn, _, err := dialAuthenticated(dctx, c.auth, c.cfg.Partition.filter(), c.localAddr(), addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	w := bufio.NewWriter(conn)
	if err := w.WriteByte(rpcVipdOp); err != nil {
		return err
	}
	if err := codec.NewEncoder(w, &codec.MsgpackHandle{}).Encode(req); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	dec := codec.NewDecoder(bufio.NewReader(conn), &codec.MsgpackHandle{})
	var msg string
	var resp opResponse
	if err := dec.Decode(&msg); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if err := dec.Decode(&resp); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if msg != "" {
		return &remoteError{msg: msg, sentinel: opCodes[resp.Code]}
	}
	return nil
}
