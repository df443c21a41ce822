package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/pki"
	"github.com/vipd/vipd/internal/rogue"
	"github.com/vipd/vipd/internal/testutil"
)

// testCA is a cluster CA for tests, with its files' directory.
type testCA struct {
	cert, key []byte
	dir       string
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	cert, key, err := pki.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(ca.dir, "ca.pem"), cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes node's certificate (for ip) and returns its TLS files.
func (ca *testCA) issue(t testing.TB, node, ip string) pki.Files {
	t.Helper()
	cert, key, err := pki.NewNodeCert(ca.cert, ca.key, node, []net.IP{net.ParseIP(ip)}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := pki.Files{CA: filepath.Join(ca.dir, "ca.pem"), Cert: filepath.Join(ca.dir, node+".pem"), Key: filepath.Join(ca.dir, node+"-key.pem")}
	if err := pki.WriteFiles(f.Cert, cert, f.Key, key, true); err != nil {
		t.Fatal(err)
	}
	return f
}

// clientTLS is a TLS client presenting node's certificate from ca (nil ca: no certificate); it does not
// verify the server, as an attacker would not.
func (ca *testCA) clientTLS(t testing.TB, node string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if ca == nil {
		return cfg
	}
	f := ca.issue(t, node, "192.0.2.66")
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

// mtlsOpt gives every node of a test cluster a certificate from ca, and, with key, the cluster key too.
func mtlsOpt(t testing.TB, ca *testCA, key bool) clusterOpt {
	return func(_ int, cfg *Config) {
		cfg.TLS = ca.issue(t, cfg.NodeName, cfg.BindAddr)
		if !key {
			cfg.EncryptKey = nil
		}
	}
}

// TestMTLSCluster: three nodes with certificates only (Raft and gossip over mutual TLS) form a cluster, elect,
// report the mode, and fail over when the leader crashes; with certificates and the key they do the same.
func TestMTLSCluster(t *testing.T) {
	for _, tt := range []struct {
		name string
		key  bool
		mode SecurityMode
	}{{"mtls", false, ModeMTLS}, {"mtls+key", true, ModeMTLSKey}} {
		t.Run(tt.name, func(t *testing.T) {
			ca := newTestCA(t, "test cluster CA")
			tc := makeCluster(t, 3, true, calmOpt, mtlsOpt(t, ca, tt.key))
			old := tc.stable()
			for i, nd := range tc.nodes {
				if st := nd.c.Status(); st.Security != tt.mode {
					t.Errorf("n%d status security %q, want %q", i+1, st.Security, tt.mode)
				}
				for _, m := range nd.c.Members() {
					if m.Security != tt.mode || m.Status != StatusAlive {
						t.Errorf("n%d lists %s as %s, security %q", i+1, m.Name, m.Status, m.Security)
					}
				}
			}
			var rest []int
			for i := range tc.nodes {
				if i != old {
					rest = append(rest, i)
				}
			}
			tc.kill(old)
			if nl := tc.waitLeader(5*time.Second, rest...); nl == old {
				t.Fatal("leader did not change")
			}
		})
	}
}

// TestRogueMTLS: a cluster secured by certificates refuses every Raft RPC from a stranger speaking plain TCP,
// TLS without a certificate, or a certificate of a foreign CA, and RPCs from a holder of a valid certificate
// whose header names another (real) node; nothing is learned or changed. The same certificate holder under
// its own name is answered: the refusals are about identity, not a broken client.
func TestRogueMTLS(t *testing.T) {
	ca := newTestCA(t, "test cluster CA")
	tc := makeCluster(t, 3, true, calmOpt, mtlsOpt(t, ca, false))
	leader := tc.stable()
	before := tc.snapshot()
	changed := tc.watchAll()
	foreign := newTestCA(t, "a foreign CA")
	var ips []net.IP
	for _, tt := range []struct {
		name      string
		handshake func(net.Conn) (net.Conn, error)
		id        string
		reason    string
	}{
		{"plain TCP", nil, "n1", "not TLS"},
		{"no certificate", rogue.TLSHandshake((*testCA)(nil).clientTLS(t, "")), "n1", "no or bad certificate"},
		{"foreign CA", rogue.TLSHandshake(foreign.clientTLS(t, "n1")), "n1", "foreign CA"},
		{"valid certificate, another node's ID", rogue.TLSHandshake(ca.clientTLS(t, "intruder")), tc.nodes[leader].cfg.NodeName, "RPC for another node"},
	} {
		ip := net.ParseIP(tc.nodes[0].ip).To4()
		ip[3] = byte(200 + len(ips))
		ips = append(ips, ip)
		t.Run(tt.name, func(t *testing.T) {
			marks := make([]int, len(tc.nodes))
			for i, nd := range tc.nodes {
				marks[i] = nd.logs.Mark()
			}
			a := &rogue.Attacker{Dialer: rogue.Dialer{Source: ip, Handshake: tt.handshake, Timeout: time.Second}, ID: tt.id,
				Addr: "192.0.2.66:7947"}
			for name, r := range attacks(a, tc.raftAddrs()) {
				if r.Err == nil || r.Learned() {
					t.Errorf("%s: answered: %+v", name, r)
				}
			}
			for i, nd := range tc.nodes {
				testutil.WaitFor(t, 5*time.Second, "refusal logged", func() bool {
					return nd.logs.ContainsLineSince(marks[i], "refused Raft connection", ip.String(), tt.reason)
				})
			}
		})
	}
	honest := &rogue.Attacker{Dialer: rogue.Dialer{Handshake: rogue.TLSHandshake(ca.clientTLS(t, "intruder")), Timeout: time.Second},
		ID: "intruder"}
	if r := honest.Probe(tc.nodes[leader].c.raftAddr); r.Err != nil || r.Term != before.terms[leader] {
		t.Errorf("certificate holder under its own name: %+v, want the term %d", r, before.terms[leader])
	}
	// A foreign memberlist node cannot join gossip over mutual TLS.
	g, err := rogue.StartGossip(rogue.GossipConfig{Name: "rogue", BindAddr: ips[0].String(), Port: DefaultGossipPort,
		Meta: rogue.ClaimMeta(ips[0].String() + ":7947")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	if n, err := g.Join(fmt.Sprintf("%s:%d", tc.nodes[0].ip, DefaultGossipPort)); n > 0 {
		t.Errorf("plain gossip joined an mTLS cluster: %d, %v", n, err)
	}
	consistently(t, time.Second, "no node lists the rogue", func() error {
		for i := range tc.nodes {
			if tc.lists(i, "rogue") {
				return fmt.Errorf("n%d lists the rogue", i+1)
			}
		}
		return nil
	})
	if after := tc.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("cluster changed: %+v -> %+v", before, after)
	}
	changed()
}

// TestMTLSBadFiles: TLS files are checked in New, before anything listens, and an error names the field of
// the file at fault.
func TestMTLSBadFiles(t *testing.T) {
	ca := newTestCA(t, "test cluster CA")
	other := newTestCA(t, "another CA")
	good := ca.issue(t, "a", "127.0.0.1")
	wrongName := ca.issue(t, "b", "127.0.0.1")
	foreign := other.issue(t, "a", "127.0.0.1")
	readable := ca.issue(t, "c", "127.0.0.1")
	if err := os.Chmod(readable.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		files pki.Files
		field string
	}{
		{"good", good, ""},
		{"missing CA", pki.Files{CA: filepath.Join(ca.dir, "nope.pem"), Cert: good.Cert, Key: good.Key}, "TLS.CA"},
		{"certificate of another node", wrongName, "TLS.Cert"},
		{"certificate of another CA", pki.Files{CA: good.CA, Cert: foreign.Cert, Key: foreign.Key}, "TLS.Cert"},
		{"key readable by others", pki.Files{CA: good.CA, Cert: readable.Cert, Key: readable.Key}, "TLS.Key"},
		{"key of another certificate", pki.Files{CA: good.CA, Cert: good.Cert, Key: wrongName.Key}, "TLS.Key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{NodeName: "a", BindAddr: "127.0.0.1", DataDir: t.TempDir(), TLS: tt.files})
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			fe, ok := fielderrAs(err)
			if !ok || fe != tt.field {
				t.Fatalf("err = %v, want a field error on %s", err, tt.field)
			}
			t.Log(err)
		})
	}
}

// TestMTLSCertRotation: a node's certificate replaced on disk (as cert-manager or kubeadm renew it) is used
// for new connections within a second, without a restart, and the cluster keeps its leader.
func TestMTLSCertRotation(t *testing.T) {
	ca := newTestCA(t, "test cluster CA")
	tc := makeCluster(t, 3, true, calmOpt, mtlsOpt(t, ca, false))
	leader := tc.stable()
	changed := tc.watchAll()
	target := (leader + 1) % 3
	serial := func() string {
		conn, err := tls.Dial("tcp", tc.nodes[target].c.raftAddr, ca.clientTLS(t, "probe"))
		if err != nil {
			return "dial: " + err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	old := serial()
	ca.issue(t, tc.nodes[target].cfg.NodeName, tc.nodes[target].ip) // renew in place
	testutil.WaitFor(t, 5*time.Second, "the renewed certificate served", func() bool {
		s := serial()
		return s != old && !strings.HasPrefix(s, "dial")
	})
	if !tc.nodes[target].logs.Contains("TLS certificates reloaded") {
		t.Error("reload not logged")
	}
	if !tc.nodes[leader].c.IsLeader() {
		t.Error("leader changed")
	}
	changed()
}
