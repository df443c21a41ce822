package tlsgossip

import (
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"

	"github.com/vipd/vipd/internal/pki"
	"github.com/vipd/vipd/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's own probe goroutine outlives Memberlist.Shutdown until its ack timer fires (the probe
		// interval times the awareness multiplier, up to seconds); it is memberlist's, not the transport's.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

var ipSeq atomic.Uint32

// nextIP returns a loopback address no other test of this process uses, so each node has its own IP (as
// on a real segment: refusals are per IP, and dials use the bind address as source).
func nextIP() string {
	n := ipSeq.Add(1)
	return fmt.Sprintf("127.77.%d.%d", n/250, n%250+1)
}

// testPKI is a CA in a temporary directory that issues node identities.
type testPKI struct {
	dir           string
	caCert, caKey []byte
	caFile        string
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &testPKI{dir: dir, caCert: certPEM, caKey: keyPEM, caFile: filepath.Join(dir, "ca.pem")}
	if err := pki.WriteFiles(p.caFile, certPEM, filepath.Join(dir, "ca-key.pem"), keyPEM, false); err != nil {
		t.Fatal(err)
	}
	return p
}

// files returns node's files.
func (p *testPKI) files(node string) pki.Files {
	return pki.Files{CA: p.caFile, Cert: filepath.Join(p.dir, node+".pem"), Key: filepath.Join(p.dir, node+"-key.pem")}
}

// trusting adds other's CA to p's CA file: p's nodes then trust other's, but not the reverse.
func (p *testPKI) trusting(t testing.TB, other *testPKI) *testPKI {
	t.Helper()
	both := append(append([]byte{}, p.caCert...), other.caCert...)
	replaceFile(t, p.caFile, both)
	return p
}

// reloader issues a certificate for node and returns a Reloader over its files.
func (p *testPKI) reloader(t testing.TB, node string) *pki.Reloader {
	t.Helper()
	certPEM, keyPEM, err := pki.NewNodeCert(p.caCert, p.caKey, node, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := p.files(node)
	if err := pki.WriteFiles(f.Cert, certPEM, f.Key, keyPEM, true); err != nil { // a restarted node gets a new one
		t.Fatal(err)
	}
	r, err := pki.NewReloader(f, node, testutil.NewLogSink(t).Logger(slog.LevelInfo), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newTransport starts a Transport for node on a fresh loopback IP; cleaned up at the end of the test.
func newTransport(t testing.TB, p *testPKI, node string, change func(*Config)) (*Transport, *testutil.LogSink) {
	t.Helper()
	tr, sink, _ := newTransportReloader(t, p, node, change)
	return tr, sink
}

// newTransportReloader is newTransport that also returns the node's Reloader.
func newTransportReloader(t testing.TB, p *testPKI, node string, change func(*Config)) (*Transport, *testutil.LogSink, *pki.Reloader) {
	t.Helper()
	r := p.reloader(t, node)
	sink := testutil.NewLogSink(t)
	cfg := Config{BindAddr: nextIP(), Server: r.ServerConfig(), Client: r.ClientConfig(), Logger: sink.Logger(slog.LevelInfo),
		Timeout: 2 * time.Second}
	if change != nil {
		change(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr, sink, r
}

// timing is a memberlist timing profile.
type timing struct {
	probeInterval, probeTimeout, gossipInterval, pushPull, tcpTimeout time.Duration
}

var (
	// fast keeps tests short.
	fast = timing{100 * time.Millisecond, 100 * time.Millisecond, 20 * time.Millisecond, 2 * time.Second, 5 * time.Second}
	// production is cluster/gossip.go's, for figures that mean something.
	production = timing{500 * time.Millisecond, 200 * time.Millisecond, 50 * time.Millisecond, 10 * time.Second, 2 * time.Second}
)

// member is one memberlist node in a test, over tlsgossip or (plain) over memberlist's NetTransport.
type member struct {
	name string
	ip   string
	tr   *Transport    // nil for a plain node
	r    *pki.Reloader // nil for a plain node
	ml   *memberlist.Memberlist
	ev   *events
	del  *metaDelegate
	logs *testutil.LogSink
}

type memberOpts struct {
	timing timing
	plain  bool // memberlist's own NetTransport, no TLS
	change func(*Config)
}

// startMember creates a memberlist node; it is shut down (without leaving) at the end of the test.
func startMember(t testing.TB, p *testPKI, name string, o memberOpts) *member {
	t.Helper()
	if o.timing == (timing{}) {
		o.timing = fast
	}
	m := &member{name: name, ev: newEvents(), del: &metaDelegate{}, logs: testutil.NewLogSink(t)}
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.ProbeInterval, mc.ProbeTimeout, mc.GossipInterval = o.timing.probeInterval, o.timing.probeTimeout, o.timing.gossipInterval
	mc.PushPullInterval, mc.TCPTimeout = o.timing.pushPull, o.timing.tcpTimeout
	mc.Logger = log.New(m.logs, "memberlist: ", 0)
	mc.Delegate, mc.Events = m.del, m.ev
	if o.plain {
		m.ip = nextIP()
		mc.BindAddr, mc.BindPort, mc.AdvertisePort = m.ip, 0, 0
	} else {
		tr, sink, r := newTransportReloader(t, p, name, func(c *Config) {
			c.Timeout = o.timing.tcpTimeout
			if o.change != nil {
				o.change(c)
			}
		})
		m.tr, m.r, m.ip = tr, r, tr.Addr().IP.String()
		m.logs = sink // one sink per node: the transport's lines and memberlist's
		mc.Logger = log.New(sink, "memberlist: ", 0)
		mc.Transport = tr
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatalf("memberlist.Create(%s): %v", name, err)
	}
	m.ml = ml
	t.Cleanup(func() { ml.Shutdown() })
	return m
}

// addr is the node's gossip address for Join.
func (m *member) addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), fmt.Sprint(n.Port))
}

// alive returns the names of the members m sees alive.
func (m *member) alive() map[string]bool {
	out := map[string]bool{}
	for _, n := range m.ml.Members() {
		if n.State == memberlist.StateAlive {
			out[n.Name] = true
		}
	}
	return out
}

// sees reports whether m sees exactly the named nodes alive.
func (m *member) sees(names ...string) bool {
	a := m.alive()
	if len(a) != len(names) {
		return false
	}
	for _, n := range names {
		if !a[n] {
			return false
		}
	}
	return true
}

// events records memberlist's membership events.
type events struct {
	mu     sync.Mutex
	joined map[string]int
	left   map[string]time.Time
	meta   map[string]string
}

func newEvents() *events {
	return &events{joined: map[string]int{}, left: map[string]time.Time{}, meta: map[string]string{}}
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.joined[n.Name]++
	e.meta[n.Name] = string(n.Meta)
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.left[n.Name] = time.Now()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.meta[n.Name] = string(n.Meta)
}

func (e *events) joins(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.joined[name]
}

func (e *events) leftAt(name string) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	at, ok := e.left[name]
	return at, ok
}

func (e *events) metaOf(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.meta[name]
}

// metaDelegate serves a node's metadata.
type metaDelegate struct {
	mu   sync.Mutex
	meta []byte
}

func (d *metaDelegate) set(b string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.meta = []byte(b)
}

func (d *metaDelegate) NodeMeta(int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.meta...)
}
func (d *metaDelegate) NotifyMsg([]byte)                {}
func (d *metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *metaDelegate) LocalState(bool) []byte          { return nil }
func (d *metaDelegate) MergeRemoteState([]byte, bool)   {}

// rawTLSClient dials addr with cfg (a valid or forged identity) and returns the connection after its handshake.
func rawTLSClient(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// replaceFile replaces path with data the way rotation tools do: a new file renamed over the old one.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}
