package tlsgossip

import (
	"crypto/x509"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vipd/vipd/internal/pki"
	"github.com/vipd/vipd/internal/testutil"
)

// TestMaxConnAge: packet connections are replaced by the dialler before the age limit, and an acceptor closes
// one that reaches it, so every peer's certificate is checked again within MaxConnAge.
func TestMaxConnAge(t *testing.T) {
	p := newPKI(t)
	const age = 400 * time.Millisecond
	a, _ := newTransport(t, p, "a", func(c *Config) { c.MaxConnAge = age })
	b, _ := newTransport(t, p, "b", func(c *Config) { c.MaxConnAge = age })
	bAddr := memberlist.Address{Addr: b.Addr().String(), Name: "b"}

	// The dialler side: a keeps sending; it replaces its connection, without losing packets to the cut.
	a.WriteToAddress([]byte("first"), bAddr)
	recvPacket(t, b)
	if a.Stats().Dials != 1 {
		t.Fatalf("Dials = %d, want 1", a.Stats().Dials)
	}
	testutil.WaitFor(t, 10*time.Second, "a redials its packet connection", func() bool {
		a.WriteToAddress([]byte("more"), bAddr)
		<-b.PacketCh()
		return a.Stats().Dials >= 2
	})

	// The acceptor side: a peer that keeps its connection open is cut at MaxConnAge.
	cfg := p.reloader(t, "c").ClientConfig()
	cfg.NextProtos = []string{ALPN}
	tc, err := rawTLSClient(t, b.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	start := time.Now()
	tc.Write([]byte{modePacket})
	rest, _ := io.ReadAll(tc) // the acknowledgement, then the end
	if lived := time.Since(start); string(rest) != string(ackOK) || lived < age || lived > age+3*time.Second {
		t.Errorf("connection lived %v and read %q, want about %v and the acknowledgement only", lived, rest, age)
	}
}

// TestCARotationCutsOffNode rotates the cluster to a new CA while gossip runs: n1 and n2 move to CA2
// certificates, then the CA bundle drops CA1. n3, still on a CA1 certificate, is then refused on every
// connection, established ones included (MaxConnAge), and declared dead, while n1 and n2 never lose each
// other: no restart, no new Transport, no flapping.
func TestCARotationCutsOffNode(t *testing.T) {
	p := newPKI(t)
	// Production timings: the fast ones flap on a loaded machine under -race, which would hide what the
	// rotation does.
	const age = 2 * time.Second
	ms := startCluster(t, p, 3, memberOpts{timing: production, change: func(c *Config) { c.MaxConnAge = age }})
	ca2Cert, ca2Key, err := pki.NewCA("CA2", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(pems ...[]byte) *x509.CertPool {
		cp := x509.NewCertPool()
		for _, b := range pems {
			cp.AppendCertsFromPEM(b)
		}
		return cp
	}
	waitPool := func(m *member, want *x509.CertPool) {
		testutil.WaitFor(t, 10*time.Second, m.name+" reloads the CA bundle", func() bool { return m.r.Current().CAs.Equal(want) })
	}

	// 1. Every node trusts CA1 and CA2.
	replaceFile(t, p.caFile, append(append([]byte{}, p.caCert...), ca2Cert...))
	for _, m := range ms {
		waitPool(m, pool(p.caCert, ca2Cert))
	}
	// 2. n1 and n2 get CA2 certificates.
	for _, m := range ms[:2] {
		certPEM, keyPEM, err := pki.NewNodeCert(ca2Cert, ca2Key, m.name, nil, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f := p.files(m.name)
		if err := pki.WriteFiles(f.Cert, certPEM, f.Key, keyPEM, true); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, m.name+" uses its CA2 certificate", func() bool {
			return m.r.Current().Cert.Leaf.Issuer.CommonName == "CA2"
		})
	}
	// 3. The bundle drops CA1.
	cut := time.Now()
	replaceFile(t, p.caFile, ca2Cert)
	for _, m := range ms[:2] {
		waitPool(m, pool(ca2Cert))
	}
	for _, m := range ms[:2] {
		testutil.WaitFor(t, 20*time.Second, m.name+" declares n3 dead", func() bool { _, ok := m.ev.leftAt("n3"); return ok })
	}
	t.Logf("n3 declared dead by n1 and n2 %v after its CA left the bundle (MaxConnAge %v)", time.Since(cut).Round(time.Millisecond), age)
	// n3 cannot connect any more (its refusals are in n1's and n2's logs, but only once a minute per IP, so
	// an earlier line may stand for them).
	for _, m := range ms[:2] {
		a := memberlist.Address{Addr: m.addr(), Name: m.name}
		if c, err := ms[2].tr.DialAddressTimeout(a, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("n3 still connects to %s", m.name)
		} else {
			t.Logf("n3 to %s: %v", m.name, err)
		}
	}
	// n1 and n2 kept each other throughout.
	for _, pair := range [][2]*member{{ms[0], ms[1]}, {ms[1], ms[0]}} {
		if at, ok := pair[0].ev.leftAt(pair[1].name); ok {
			t.Errorf("%s lost %s at %v during the rotation", pair[0].name, pair[1].name, at)
		}
		if !pair[0].alive()[pair[1].name] {
			t.Errorf("%s does not see %s alive", pair[0].name, pair[1].name)
		}
	}
}
