package tlsgossip

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vipd/vipd/internal/fielderr"
	"github.com/vipd/vipd/internal/pki"
	"github.com/vipd/vipd/internal/testutil"
)

func TestConfigValidation(t *testing.T) {
	p := newPKI(t)
	r := p.reloader(t, "a")
	good := func() Config {
		return Config{BindAddr: "127.0.0.1", Server: r.ServerConfig(), Client: r.ClientConfig()}
	}
	noClientAuth := r.ServerConfig()
	noClientAuth.ClientAuth = tls.NoClientCert
	unverified := r.ServerConfig()
	unverified.VerifyConnection = nil
	insecure := r.ClientConfig()
	insecure.VerifyConnection = nil
	tests := []struct {
		name   string
		change func(*Config)
		field  string
	}{
		{"bind address not an IP", func(c *Config) { c.BindAddr = "lb1" }, "BindAddr"},
		{"port out of range", func(c *Config) { c.BindPort = 70000 }, "BindPort"},
		{"no server config", func(c *Config) { c.Server = nil }, "Server"},
		{"server without client certificates", func(c *Config) { c.Server = noClientAuth }, "Server"},
		{"server accepting any certificate", func(c *Config) { c.Server = unverified }, "Server"},
		{"no client config", func(c *Config) { c.Client = nil }, "Client"},
		{"client verifying nothing", func(c *Config) { c.Client = insecure }, "Client"},
		{"negative handshake timeout", func(c *Config) { c.HandshakeTimeout = -1 }, "HandshakeTimeout"},
		{"negative timeout", func(c *Config) { c.Timeout = -1 }, "Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.change(&cfg)
			_, err := New(cfg)
			fe, ok := fielderr.As(err)
			if !ok || fe.Field != tt.field || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want a fielderr for %s", err, tt.field)
			}
			t.Log(err)
		})
	}

	// A port in use: the error names the address.
	tr, _ := newTransport(t, p, "b", nil)
	cfg := good()
	cfg.BindAddr, cfg.BindPort = tr.Addr().IP.String(), tr.Addr().Port
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tr.Addr().String()) {
		t.Errorf("New on a port in use = %v, want an error naming %s", err, tr.Addr())
	}
}

func TestFinalAdvertiseAddr(t *testing.T) {
	p := newPKI(t)
	tr, _ := newTransport(t, p, "a", nil)
	ip, port, err := tr.FinalAdvertiseAddr("", 7946)
	if err != nil || !ip.Equal(tr.Addr().IP) || port != tr.Addr().Port {
		t.Errorf("FinalAdvertiseAddr(\"\") = %v %d %v, want the bound %v", ip, port, err, tr.Addr())
	}
	ip, port, err = tr.FinalAdvertiseAddr("10.0.0.11", 7000)
	if err != nil || ip.String() != "10.0.0.11" || len(ip) != net.IPv4len || port != 7000 {
		t.Errorf("FinalAdvertiseAddr(10.0.0.11) = %v %d %v", ip, port, err)
	}
	if _, port, _ = tr.FinalAdvertiseAddr("10.0.0.11", 0); port != tr.Addr().Port {
		t.Errorf("advertise port 0 = %d, want the bound %d", port, tr.Addr().Port)
	}
	if _, _, err = tr.FinalAdvertiseAddr("lb1", 0); err == nil {
		t.Error("FinalAdvertiseAddr accepted a name")
	}
	wild, _ := newTransport(t, p, "w", func(c *Config) { c.BindAddr = "" })
	if _, _, err = wild.FinalAdvertiseAddr("", 0); err == nil || !strings.Contains(err.Error(), "advertise") {
		t.Errorf("wildcard without advertise address = %v, want an error asking for one", err)
	}
}

func TestPacketsAndStreams(t *testing.T) {
	p := newPKI(t)
	a, _ := newTransport(t, p, "a", nil)
	b, _ := newTransport(t, p, "b", nil)
	bAddr := memberlist.Address{Addr: b.Addr().String(), Name: "b"}

	sent, err := a.WriteToAddress([]byte("ping-0"), bAddr)
	if err != nil {
		t.Fatal(err)
	}
	pkt := recvPacket(t, b)
	if string(pkt.Buf) != "ping-0" {
		t.Fatalf("received %q", pkt.Buf)
	}
	if from := pkt.From.(*net.TCPAddr); !from.IP.Equal(a.Addr().IP) {
		t.Errorf("From = %v, want a's IP %v (dials use the bind address)", from, a.Addr().IP)
	}
	if pkt.Timestamp.Before(sent) || time.Since(pkt.Timestamp) > time.Second {
		t.Errorf("Timestamp %v not between the send (%v) and now", pkt.Timestamp, sent)
	}
	// Over the established connection, packets arrive in order and whole, the largest one too.
	big := bytes.Repeat([]byte{'x'}, MaxPacketSize)
	for i := 1; i <= 50; i++ {
		if _, err := a.WriteToAddress([]byte{byte(i)}, bAddr); err != nil {
			t.Fatal(err)
		}
	}
	a.WriteToAddress(big, bAddr)
	for i := 1; i <= 50; i++ {
		if pkt := recvPacket(t, b); len(pkt.Buf) != 1 || pkt.Buf[0] != byte(i) {
			t.Fatalf("packet %d = %v", i, pkt.Buf)
		}
	}
	if pkt := recvPacket(t, b); !bytes.Equal(pkt.Buf, big) {
		t.Fatalf("largest packet: %d bytes", len(pkt.Buf))
	}
	for _, n := range []int{0, MaxPacketSize + 1} {
		if _, err := a.WriteToAddress(make([]byte, n), bAddr); err == nil {
			t.Errorf("WriteToAddress of %d bytes succeeded", n)
		}
	}

	// A stream, both ways, with the peer's identity visible on both ends.
	c, err := a.DialAddressTimeout(bAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var s net.Conn
	select {
	case s = <-b.StreamCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted")
	}
	defer s.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("stream read %q %v", buf, err)
	}
	s.Write([]byte("olleh"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "olleh" {
		t.Fatalf("stream reply %q %v", buf, err)
	}
	type stater interface{ ConnectionState() tls.ConnectionState }
	if names := pki.PeerNames(s.(stater).ConnectionState()); !pki.HasName(names, "a") {
		t.Errorf("acceptor sees %q, want a", names)
	}
	if names := pki.PeerNames(c.(stater).ConnectionState()); !pki.HasName(names, "b") {
		t.Errorf("dialler sees %q, want b", names)
	}
	if st := b.Stats(); st.PacketsReceived != 52 || st.Refused != 0 {
		t.Errorf("b's stats %+v, want 52 packets received, none refused", st)
	}
}

func recvPacket(t *testing.T, tr *Transport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet within 5 s")
		return nil
	}
}

// TestWrongPeer: memberlist addresses node b, but the node at that address is c.
func TestWrongPeer(t *testing.T) {
	p := newPKI(t)
	a, logs := newTransport(t, p, "a", nil)
	c, _ := newTransport(t, p, "c", nil)
	wrong := memberlist.Address{Addr: c.Addr().String(), Name: "b"}
	if _, err := a.DialAddressTimeout(wrong, 2*time.Second); !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("dial = %v, want ErrWrongPeer", err)
	}
	a.WriteToAddress([]byte("x"), wrong)
	testutil.WaitFor(t, 5*time.Second, "the packet to the wrong peer dropped", func() bool { return a.Stats().PacketsDropped == 1 })
	if !logs.ContainsLine("could not connect", `not \"b\"`) {
		t.Errorf("wrong peer not logged:\n%s", logs.String())
	}
	if st := c.Stats(); st.PacketsReceived != 0 {
		t.Errorf("c received %d packets meant for b", st.PacketsReceived)
	}
	// Unnamed (as memberlist's Join to an address) is accepted.
	s, err := a.DialTimeout(c.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("unnamed dial: %v", err)
	}
	s.Close()
}

// TestRefusedConnections: what a stranger with the wrong credentials, protocol or frames gets.
func TestRefusedConnections(t *testing.T) {
	p := newPKI(t)
	b, logs := newTransport(t, p, "b", nil)
	addr := b.Addr().String()
	peer := p.reloader(t, "a").ClientConfig()
	peer.NextProtos = []string{ALPN}
	foreign := newPKI(t).reloader(t, "a").ClientConfig()
	foreign.NextProtos = []string{ALPN}
	foreign.VerifyConnection = nil // the stranger trusts anyone: only b's check can stop it
	raftALPN := peer.Clone()
	raftALPN.NextProtos = []string{"vipd-raft/1"}
	noALPN := peer.Clone()
	noALPN.NextProtos = nil

	frame := func(n uint32) []byte { b := make([]byte, 4); binary.BigEndian.PutUint32(b, n); return b }
	tests := []struct {
		name  string
		cfg   *tls.Config // nil: not TLS at all
		send  []byte      // after the handshake
		acked bool        // b accepts the peer (then refuses its frame)
		log   string
	}{
		{name: "certificate from another CA", cfg: foreign, send: []byte{modePacket}, log: "not verified by the CA bundle"},
		{name: "another protocol (raft) on the gossip port", cfg: raftALPN, log: "unsupported application protocols"},
		{name: "no ALPN", cfg: noALPN, send: []byte{modePacket}, log: `peer speaks \"\"`},
		{name: "unknown mode", cfg: peer, send: []byte{'x'}, log: "unknown connection mode"},
		{name: "oversized frame", cfg: peer, send: append([]byte{modePacket}, frame(MaxPacketSize+1)...), acked: true, log: "bad packet frame: 65537 bytes"},
		{name: "empty frame", cfg: peer, send: append([]byte{modePacket}, frame(0)...), acked: true, log: "bad packet frame: 0 bytes"},
		{name: "plain memberlist push-pull", send: []byte{6, 0x83, 0xa4, 'J', 'o', 'i', 'n', 0xc3}, log: "first record does not look like a TLS handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mark := logs.Mark()
			refused := b.Stats().Refused
			// Each case comes from its own IP, as the refusal log is per IP.
			src := &net.TCPAddr{IP: net.ParseIP(nextIP())}
			d := net.Dialer{LocalAddr: src, Timeout: 2 * time.Second}
			raw, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			var conn net.Conn = raw
			if tt.cfg != nil {
				tc := tls.Client(raw, tt.cfg)
				if err := tc.Handshake(); err != nil {
					t.Logf("client handshake: %v", err)
				}
				conn = tc
			}
			conn.Write(tt.send)
			// b closes the connection, having sent nothing but, to an accepted peer, its acknowledgement.
			rest, err := io.ReadAll(conn)
			want := ""
			if tt.acked {
				want = string(ackOK)
			}
			if string(rest) != want {
				t.Errorf("read %q (%v), want %q", rest, err, want)
			}
			testutil.WaitFor(t, 5*time.Second, "the refusal logged", func() bool {
				return logs.ContainsLineSince(mark, "refused connection", src.IP.String(), tt.log)
			})
			if b.Stats().Refused != refused+1 {
				t.Errorf("Refused %d, want %d", b.Stats().Refused, refused+1)
			}
		})
	}
	if st := b.Stats(); st.PacketsReceived != 0 {
		t.Errorf("b took %d packets from strangers", st.PacketsReceived)
	}
}

// TestAllow: the partition filter drops packets and dials both ways.
func TestAllow(t *testing.T) {
	p := newPKI(t)
	var blockAll atomic.Bool
	a, _ := newTransport(t, p, "a", func(c *Config) { c.Allow = func(string) bool { return !blockAll.Load() } })
	b, _ := newTransport(t, p, "b", nil)
	bAddr := memberlist.Address{Addr: b.Addr().String(), Name: "b"}
	blockAll.Store(true)
	if _, err := a.DialAddressTimeout(bAddr, time.Second); !errors.Is(err, ErrBlocked) {
		t.Errorf("blocked dial = %v, want ErrBlocked", err)
	}
	a.WriteToAddress([]byte("x"), bAddr)
	if st := a.Stats(); st.PacketsDropped != 1 {
		t.Errorf("blocked packet not dropped: %+v", st)
	}
	// b dials a, which refuses the accepted connection at once.
	if _, err := b.DialAddressTimeout(memberlist.Address{Addr: a.Addr().String()}, time.Second); err == nil {
		t.Error("a accepted a connection from a blocked peer")
	}
	blockAll.Store(false)
	a.WriteToAddress([]byte("y"), bAddr)
	if pkt := recvPacket(t, b); string(pkt.Buf) != "y" {
		t.Errorf("after the heal: %q", pkt.Buf)
	}
}

// TestSendNeverBlocks: a destination that accepts TCP but never answers the handshake (a hung peer) costs the
// sender nothing: packets are queued up to the bound and then dropped, each WriteTo returns at once, and
// Shutdown ends the hung dial at once.
func TestSendNeverBlocks(t *testing.T) {
	p := newPKI(t)
	hung, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	var held []net.Conn
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	a, _ := newTransport(t, p, "a", func(c *Config) { c.Timeout = time.Minute })
	const n = 1000
	start := time.Now()
	var slowest time.Duration
	for range n {
		t0 := time.Now()
		if _, err := a.WriteTo([]byte("probe"), hung.Addr().String()); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("%d packets to a hung peer in %v, slowest WriteTo %v; stats %+v", n, time.Since(start), slowest, a.Stats())
	if slowest > 100*time.Millisecond {
		t.Errorf("a WriteTo took %v", slowest)
	}
	if st := a.Stats(); st.PacketsDropped < n-queueLen-1 {
		t.Errorf("dropped %d, want at least %d", st.PacketsDropped, n-queueLen-1)
	}
	t0 := time.Now()
	a.Shutdown()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Shutdown with a hung dial took %v", d)
	}
	if _, err := a.WriteTo([]byte("x"), hung.Addr().String()); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteTo after Shutdown = %v, want ErrClosed", err)
	}
	if _, err := a.DialTimeout(hung.Addr().String(), time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("DialTimeout after Shutdown = %v, want ErrClosed", err)
	}
	hung.Close()
	<-acceptDone
	for _, c := range held {
		c.Close()
	}
}

// TestUnreachablePeer: after a refused dial, packets are dropped for the back-off instead of redialling on
// each one, and the peer is reachable again once it is back.
func TestUnreachablePeer(t *testing.T) {
	p := newPKI(t)
	a, _ := newTransport(t, p, "a", nil)
	b, _ := newTransport(t, p, "b", nil)
	addr := b.Addr().String()
	b.Shutdown() // the address now refuses connections
	a.WriteTo([]byte("1"), addr)
	testutil.WaitFor(t, 5*time.Second, "the first packet dropped", func() bool { return a.Stats().PacketsDropped == 1 })
	for range 10 {
		a.WriteTo([]byte("2"), addr)
	}
	if st := a.Stats(); st.PacketsDropped != 11 {
		t.Errorf("dropped %d during the back-off, want 11", st.PacketsDropped)
	}
}
