package cluster

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vipd/vipd/internal/testutil"
)

// testRPCServer runs an rpcServer on ln with auth and filter whose raft side answers every RPC it is
// handed with a RequestVote response of term 7 (a stand-in for raft), until the test ends.
func testRPCServer(t *testing.T, ln net.Listener, auth *peerAuth, filter *netFilter) *rpcServer {
	t.Helper()
	log := testutil.NewLogSink(t).Logger(slog.LevelDebug)
	srv := newRPCServer(ln, auth, filter, log, newRateLog(log, refusalLogEvery, time.Now), nil)
	srv.start()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-srv.consume:
				rpc.Respond(&raft.RequestVoteResponse{Term: 7}, nil)
			case <-srv.done:
				return
			}
		}
	}()
	t.Cleanup(func() { srv.close(); <-done })
	return srv
}

// testClient is raft's NetworkTransport dialing from ip through a dialLayer with auth.
func testClient(t *testing.T, ip string, auth *peerAuth) *raft.NetworkTransport {
	t.Helper()
	dl := &dialLayer{auth: auth, filter: NewPartition().filter(), local: &net.TCPAddr{IP: net.ParseIP(ip)},
		advertise: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}, closed: make(chan struct{})}
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: dl, MaxPool: 1, Timeout: 2 * time.Second,
		Logger: newHclog(testutil.NewLogSink(t).Logger(slog.LevelDebug), "client")})
	t.Cleanup(func() { nt.Close() })
	return nt
}

func requestVote(nt *raft.NetworkTransport, id, addr string) (uint64, error) {
	var resp raft.RequestVoteResponse
	err := nt.RequestVote(raft.ServerID("x"), raft.ServerAddress(addr),
		&raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte(id)}, Term: 1}, &resp)
	return resp.Term, err
}

// TestPartitionFilter checks Partition's contract on real sockets and the real Raft transport: nil blocks
// nothing, Block replaces the set and closes established connections to newly blocked peers, Heal unblocks.
func TestPartitionFilter(t *testing.T) {
	var none *Partition
	if none.filter().isBlocked("127.0.0.1:1") {
		t.Fatal("nil Partition blocks")
	}

	base := randomNet()
	srvIP, peerIP, otherIP := base+"1", base+"2", base+"3"
	ln, err := net.Listen("tcp", srvIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	p := NewPartition()
	insecure := &peerAuth{mode: ModeInsecure}
	srv := testRPCServer(t, ln, insecure, p.filter())
	addr := ln.Addr().String()
	if term, err := requestVote(testClient(t, peerIP, insecure), "peer", addr); err != nil || term != 7 {
		t.Fatalf("RPC before any partition: term %d, %v", term, err)
	}
	dialFrom := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedByPeer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	tracked := func() int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.conns)
	}

	before := tracked()
	fromPeer := dialFrom(peerIP)
	fromOther := dialFrom(otherIP)
	testutil.WaitFor(t, 2*time.Second, "both connections accepted", func() bool { return tracked() >= before+2 })
	p.Block(peerIP)
	if !p.filter().isBlocked(peerIP+":7947") || p.filter().isBlocked(otherIP+":7947") {
		t.Fatal("Block(peer) blocks the wrong set")
	}
	if !closedByPeer(fromPeer) {
		t.Error("established connection from the blocked peer was not closed")
	}
	if closedByPeer(fromOther) {
		t.Error("connection from an unblocked peer was closed")
	}
	dl := &dialLayer{auth: insecure, filter: p.filter(), local: &net.TCPAddr{IP: net.ParseIP(srvIP)}, closed: make(chan struct{})}
	if _, err := dl.Dial(raft.ServerAddress(peerIP+":7947"), time.Second); !errors.Is(err, errBlocked) {
		t.Errorf("dial to blocked peer: err = %v, want errBlocked", err)
	}
	// A new connection from the blocked peer is accepted by the kernel and closed by the server.
	if !closedByPeer(dialFrom(peerIP)) {
		t.Error("new connection from the blocked peer was not refused")
	}
	if _, err := requestVote(testClient(t, peerIP, insecure), "peer", addr); err == nil {
		t.Error("RPC from the blocked peer was answered")
	}

	p.Block(otherIP) // replaces, not adds
	if p.filter().isBlocked(peerIP) || !p.filter().isBlocked(otherIP) {
		t.Error("Block did not replace the blocked set")
	}
	p.Heal()
	if p.filter().isBlocked(otherIP) {
		t.Error("Heal left a peer blocked")
	}
	if term, err := requestVote(testClient(t, peerIP, insecure), "peer", addr); err != nil || term != 7 {
		t.Errorf("RPC after Heal: term %d, %v", term, err)
	}
}
