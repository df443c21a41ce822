package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/rogue"
	"github.com/vipd/vipd/internal/testutil"
)

// insecureOpt runs a test cluster without authentication, as vipd did before keys.
func insecureOpt(_ int, cfg *Config) { cfg.EncryptKey, cfg.Insecure = nil, true }

// calmOpt gives a test cluster Raft timings five times the defaults. The attack tests assert that nothing
// moved; with the 50 ms default lease, a CPU stall of the shared test machine alone can move leadership
// (see DefaultHeartbeat), which would blur what they check. A successful attack moves the term or the
// configuration whatever the timings.
func calmOpt(_ int, cfg *Config) {
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaseTimeout = 5*DefaultHeartbeat, 5*DefaultElection, 5*DefaultLease
}

// snapshot is what an attack must not change: who leads, every node's term and voters.
type snapshot struct {
	leader int
	terms  []uint64
	voters [][]string
}

func (tc *tcluster) snapshot() snapshot {
	s := snapshot{leader: -1}
	for i, nd := range tc.nodes {
		if nd.c.IsLeader() {
			s.leader = i
		}
		s.terms = append(s.terms, nd.c.Status().Term)
		v := tc.voters(i)
		slices.Sort(v)
		s.voters = append(s.voters, v)
	}
	return s
}

// watchAll subscribes to every node's leadership and returns a check that fails the test on any change.
func (tc *tcluster) watchAll() func() {
	tc.t.Helper()
	var chans []<-chan LeaderState
	var first []LeaderState
	for _, nd := range tc.nodes {
		ch, cancel := nd.c.WatchLeadership()
		tc.t.Cleanup(cancel)
		chans = append(chans, ch)
		first = append(first, <-ch)
	}
	return func() {
		tc.t.Helper()
		for i, ch := range chans {
			select {
			case v := <-ch:
				if v != first[i] {
					tc.t.Errorf("n%d leadership changed: %+v -> %+v", i+1, first[i], v)
				}
			default:
			}
		}
	}
}

func (tc *tcluster) raftAddrs() []string {
	var out []string
	for _, nd := range tc.nodes {
		out = append(out, nd.c.raftAddr)
	}
	return out
}

// attacks runs every rogue RPC against every node and returns the results by name.
func attacks(a *rogue.Attacker, addrs []string) map[string]rogue.Result {
	out := map[string]rogue.Result{}
	for i, addr := range addrs {
		n := fmt.Sprintf("n%d", i+1)
		out[n+" probe"] = a.Probe(addr)
		out[n+" vote"] = a.RequestVote(addr, 1000)
		out[n+" pre-vote"] = a.RequestPreVote(addr, 1000)
		out[n+" wedge"] = a.Wedge(addr, "intruder", "192.0.2.66:7947")
		out[n+" timeout-now"] = a.TimeoutNow(addr)
		out[n+" install-snapshot"] = a.InstallSnapshot(addr, 1000, "intruder", "192.0.2.66:7947", []byte("{}"))
	}
	return out
}

// TestRogueRaftRefused: a 3-node cluster with a key refuses every Raft RPC from a stranger without the key
// (plain TCP as raft's own transport speaks it, TLS without a proof, and a wrong key): the stranger learns
// nothing (no term, no index), and the leader, every term and every configuration stay as they were; each
// node logs the stranger once (per IP per minute) with the reason, and counts every refusal.
func TestRogueRaftRefused(t *testing.T) {
	tc := makeCluster(t, 3, true, calmOpt)
	tc.stable()
	for i, nd := range tc.nodes {
		for _, m := range nd.c.Members() {
			if m.Security != ModeKey {
				t.Errorf("n%d lists %s with security %q, want key", i+1, m.Name, m.Security)
			}
		}
		if nd.logs.Contains("INSECURE") {
			t.Errorf("n%d warned about insecure mode with a key", i+1)
		}
	}
	before := tc.snapshot()
	changed := tc.watchAll()
	wrongKey := []byte("a-wrong-key-of-exactly-32-bytes!")
	var ips []net.IP
	for _, tt := range []struct {
		name      string
		handshake func(net.Conn) (net.Conn, error)
		reason    string
	}{
		{"plain TCP", nil, "not TLS"},
		{"TLS without proof", rogue.TLSHandshake(&tls.Config{InsecureSkipVerify: true}), "malformed key proof"},
		{"wrong key", rogue.KeyProofHandshake("intruder", wrongKey), "wrong key"},
		{"wrong key, real name", rogue.KeyProofHandshake("n1", wrongKey), "wrong key"},
	} {
		// Each kind of stranger comes from its own IP: refusals are logged once per IP per minute.
		attackerIP := net.ParseIP(tc.nodes[0].ip).To4()
		attackerIP[3] = byte(200 + len(ips))
		ips = append(ips, attackerIP)
		t.Run(tt.name, func(t *testing.T) {
			marks := make([]int, len(tc.nodes))
			refused := make([]uint64, len(tc.nodes))
			for i, nd := range tc.nodes {
				marks[i], refused[i] = nd.logs.Mark(), nd.c.Status().Refused
			}
			a := &rogue.Attacker{Dialer: rogue.Dialer{Source: attackerIP, Handshake: tt.handshake, Timeout: time.Second},
				ID: "n1", Addr: "192.0.2.66:7947"}
			for name, r := range attacks(a, tc.raftAddrs()) {
				if r.Err == nil || r.Learned() {
					t.Errorf("%s: answered: %+v", name, r)
				}
			}
			for i, nd := range tc.nodes {
				testutil.WaitFor(t, 5*time.Second, "refusal logged with its reason", func() bool {
					return nd.logs.ContainsLineSince(marks[i], "refused Raft connection", attackerIP.String(), tt.reason)
				})
				if got := nd.c.Status().Refused - refused[i]; got < 6 {
					t.Errorf("n%d counted %d refusals, want at least 6", i+1, got)
				}
			}
		})
	}
	for i, nd := range tc.nodes {
		for _, ip := range ips {
			if n := nd.logs.CountLinesSince(0, "refused Raft connection", "peer="+ip.String()+":"); n != 1 {
				t.Errorf("n%d logged the stranger at %s %d times in under a minute, want once", i+1, ip, n)
			}
		}
	}
	if after := tc.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("cluster changed: %+v -> %+v", before, after)
	}
	changed()
}

// TestRogueKeyHolderCannotImpersonate: with the cluster key, a client is trusted as the node it proved, and
// only as that node: RPCs whose header names another (real) node are refused, so a TimeoutNow "from the
// leader" moves nothing. The same client claiming its own name is answered, which shows the rogue's proof
// is right and the refusals above are about the key.
func TestRogueKeyHolderCannotImpersonate(t *testing.T) {
	tc := makeCluster(t, 3, true, calmOpt)
	leader := tc.stable()
	before := tc.snapshot()
	changed := tc.watchAll()
	follower := (leader + 1) % 3
	spoof := &rogue.Attacker{Dialer: rogue.Dialer{Handshake: rogue.KeyProofHandshake("intruder", testKey), Timeout: time.Second},
		ID: tc.nodes[leader].cfg.NodeName, Addr: tc.nodes[leader].c.raftAddr}
	mark := tc.nodes[follower].logs.Mark()
	if r := spoof.TimeoutNow(tc.nodes[follower].c.raftAddr); r.Err == nil {
		t.Errorf("TimeoutNow with another node's header ID answered: %+v", r)
	}
	if r := spoof.Probe(tc.nodes[follower].c.raftAddr); r.Err == nil || r.Learned() {
		t.Errorf("probe with another node's header ID answered: %+v", r)
	}
	testutil.WaitFor(t, 5*time.Second, "identity refusal logged", func() bool {
		return tc.nodes[follower].logs.ContainsLineSince(mark, "refused Raft connection", "RPC for another node")
	})
	honest := &rogue.Attacker{Dialer: rogue.Dialer{Handshake: rogue.KeyProofHandshake("intruder", testKey), Timeout: time.Second},
		ID: "intruder"}
	if r := honest.Probe(tc.nodes[follower].c.raftAddr); r.Err != nil || r.Term != before.terms[follower] {
		t.Errorf("key holder's probe under its own name: %+v, want the term %d", r, before.terms[follower])
	}
	if after := tc.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("cluster changed: %+v -> %+v", before, after)
	}
	changed()
}

// TestRogueRaftInsecure is the control: the same stranger against a cluster run with Insecure reads every
// node's term, makes a follower leader with one TimeoutNow, and wedges every node with a foreign
// configuration. If these stopped working, the refusals above would prove nothing.
func TestRogueRaftInsecure(t *testing.T) {
	tc := makeCluster(t, 3, true, insecureOpt, calmOpt)
	leader := tc.stable()
	before := tc.snapshot()
	for i, nd := range tc.nodes {
		if !nd.logs.ContainsLine("INSECURE", "level=WARN") {
			t.Errorf("n%d did not warn that it runs insecure", i+1)
		}
		if st := nd.c.Status(); st.Security != ModeInsecure {
			t.Errorf("n%d status security %q", i+1, st.Security)
		}
	}
	a := &rogue.Attacker{Dialer: rogue.Dialer{Timeout: time.Second}, ID: "intruder", Addr: "192.0.2.66:7947"}
	for i, addr := range tc.raftAddrs() {
		if r := a.Probe(addr); r.Err != nil || r.Term != before.terms[i] || r.LastLog == 0 {
			t.Errorf("probe of insecure n%d: %+v, want its term %d and last index", i+1, r, before.terms[i])
		}
	}
	follower := (leader + 1) % 3
	if r := a.TimeoutNow(tc.nodes[follower].c.raftAddr); r.Err != nil {
		t.Fatalf("TimeoutNow to an insecure follower: %v", r.Err)
	}
	testutil.WaitFor(t, 5*time.Second, "the stranger's TimeoutNow elected the follower", func() bool {
		return tc.nodes[follower].c.IsLeader()
	})
	for i, addr := range tc.raftAddrs() {
		if r := a.Wedge(addr, "intruder", "192.0.2.66:7947"); r.Err != nil || !r.Success {
			t.Errorf("wedge of insecure n%d: %+v", i+1, r)
		}
	}
	for i := range tc.nodes {
		testutil.WaitFor(t, 5*time.Second, "insecure node wedged to the foreign voter", func() bool {
			v := tc.voters(i)
			return len(v) == 1 && v[0] == "intruder"
		})
	}
	t.Logf("insecure: term %v -> %v, voters now %v", before.terms, tc.snapshot().terms, tc.voters(0))
}
