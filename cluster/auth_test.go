package cluster

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// keyPair returns a server and a client peerAuth in key mode with the given keys.
func keyPair(t testing.TB, serverKeys, clientKeys [][]byte) (server, client *peerAuth) {
	t.Helper()
	srv, cli, err := ephemeralTLS(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, keys [][]byte) *peerAuth {
		return &peerAuth{mode: ModeKey, name: name, keys: func() [][]byte { return keys },
			serverTLS: func() *tls.Config { return srv }, clientTLS: func() *tls.Config { return cli }}
	}
	return mk("srv", serverKeys), mk("cli", clientKeys)
}

type handshakeResult struct {
	names []string
	err   error
}

// handshake runs client and server over a real loopback TCP connection with a deadline.
func handshake(t *testing.T, server, client *peerAuth) (srv, cli handshakeResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan handshakeResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- handshakeResult{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		_, names, err := server.server(c)
		done <- handshakeResult{names, err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(2 * time.Second))
	_, names, err := client.client(raw)
	cli = handshakeResult{names, err}
	if err != nil {
		raw.Close() // the server may be waiting for a proof the client will not send
	}
	return <-done, cli
}

func TestKeyHandshake(t *testing.T) {
	k1, k2, k3 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 24)
	for _, tt := range []struct {
		name               string
		serverKeys, client [][]byte
		ok                 bool
		serverReason       string
	}{
		{"same key", [][]byte{k1}, [][]byte{k1}, true, ""},
		{"rotation: server has both", [][]byte{k1, k2}, [][]byte{k2}, true, ""},
		{"rotation: client has both", [][]byte{k2}, [][]byte{k1, k2}, true, ""},
		{"wrong key", [][]byte{k1}, [][]byte{k2}, false, "wrong key"},
		{"no common key", [][]byte{k1, k3}, [][]byte{k2}, false, "wrong key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, c := keyPair(t, tt.serverKeys, tt.client)
			srv, cli := handshake(t, s, c)
			if tt.ok {
				if srv.err != nil || cli.err != nil {
					t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
				}
				if len(srv.names) != 1 || srv.names[0] != "cli" || len(cli.names) != 1 || cli.names[0] != "srv" {
					t.Errorf("names: server saw %v, client saw %v", srv.names, cli.names)
				}
				return
			}
			if cli.err == nil || srv.err == nil {
				t.Fatalf("handshake succeeded: server %v, client %v", srv.err, cli.err)
			}
			if got := refusalReason(srv.err); got != tt.serverReason {
				t.Errorf("server reason %q (%v), want %q", got, srv.err, tt.serverReason)
			}
			// The client learned only that it was refused: the server sent no proof.
			if !strings.Contains(cli.err.Error(), "without proving a key") {
				t.Errorf("client error %v", cli.err)
			}
		})
	}
}

// TestProofBinding: a proof is bound to its connection (EKM), its role and its name, so it cannot be
// replayed on another connection, reflected from client to server, or reused for another name.
func TestProofBinding(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	ekm1, ekm2 := bytes.Repeat([]byte{1}, ekmLen), bytes.Repeat([]byte{2}, ekmLen)
	h := makeHello("n1", [][]byte{key}, ekm1, roleClient)
	if err := verifyHello(h, [][]byte{key}, ekm1, roleClient); err != nil {
		t.Fatalf("genuine proof refused: %v", err)
	}
	if err := verifyHello(h, [][]byte{key}, ekm2, roleClient); !errors.Is(err, errWrongKey) {
		t.Error("proof replayed on another connection accepted")
	}
	if err := verifyHello(h, [][]byte{key}, ekm1, roleServer); !errors.Is(err, errWrongKey) {
		t.Error("client proof reflected as a server proof accepted")
	}
	renamed := h
	renamed.name = "n2"
	if err := verifyHello(renamed, [][]byte{key}, ekm1, roleClient); !errors.Is(err, errWrongKey) {
		t.Error("proof reused for another name accepted")
	}
	wrongFP := hello{name: "n1", proofs: []proof{{fp: [4]byte{}, mac: h.proofs[0].mac}}}
	if err := verifyHello(wrongFP, [][]byte{key}, ekm1, roleClient); !errors.Is(err, errWrongKey) {
		t.Error("proof under another fingerprint accepted")
	}
	got, err := readHello(bytes.NewReader(h.marshal()))
	if err != nil || got.name != h.name || len(got.proofs) != 1 || got.proofs[0] != h.proofs[0] {
		t.Errorf("hello round trip: %+v, %v", got, err)
	}
}

func TestReadHelloRefusesMalformed(t *testing.T) {
	good := makeHello("n1", [][]byte{bytes.Repeat([]byte{1}, 16)}, make([]byte, ekmLen), roleClient).marshal()
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"raft bytes", []byte{0, 0x85, 0xa1, 'T', 1}},
		{"bad magic", append([]byte("XPD1"), good[4:]...)},
		{"zero name", append([]byte("VPD1"), 0)},
		{"name too long", append([]byte("VPD1"), 64)},
		{"escape in name", append(append([]byte("VPD1"), 4), "a\x1bb\x00"...)},
		{"no proofs", append(append([]byte("VPD1"), 2), "n1\x00"...)},
		{"too many proofs", append(append([]byte("VPD1"), 2), "n1\x09"...)},
		{"truncated", good[:len(good)-1]},
	} {
		if _, err := readHello(bytes.NewReader(tt.b)); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	// readHello never reads beyond its message: the Raft stream after it is intact.
	r := bytes.NewReader(append(append([]byte{}, good...), 0xAA))
	if _, err := readHello(r); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(r); !bytes.Equal(rest, []byte{0xAA}) {
		t.Errorf("read past the hello: %x left", rest)
	}
}

// TestSilentStrangersCannotStallAccepts: a stranger opening many connections that never speak takes at most
// its per-address share of the handshake slots; the surplus is refused at once, a real peer from another
// address still authenticates and is answered at once, and the silent ones are dropped after the handshake
// deadline.
func TestSilentStrangersCannotStallAccepts(t *testing.T) {
	s, c := keyPair(t, [][]byte{testKey}, [][]byte{testKey})
	base := randomNet()
	ln, err := net.Listen("tcp", base+"1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := testRPCServer(t, ln, s, nil)
	var silent []net.Conn
	for range maxHandshakesPerIP + 10 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(base + "66")}}
		conn, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		silent = append(silent, conn)
	}
	testutil.WaitFor(t, 5*time.Second, "surplus strangers refused", func() bool { return srv.refused.total() >= 10 })
	start := time.Now()
	if term, err := requestVote(testClient(t, base+"2", c), "cli", ln.Addr().String()); err != nil || term != 7 {
		t.Fatalf("real peer while strangers wait: term %d, %v", term, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("real peer waited %v", d)
	}
	silent[0].SetReadDeadline(time.Now().Add(handshakeTimeout + 3*time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err == nil {
		t.Error("a silent stranger got data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("a silent stranger was not dropped after the handshake deadline")
	}
}
