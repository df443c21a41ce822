package cluster

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestPartitionFilter checks Partition's contract on real sockets: nil blocks nothing, Block replaces the set
// and closes established connections to newly blocked peers, Heal unblocks.
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
	sl := &streamLayer{ln: ln, advertise: ln.Addr(), filter: p.filter(), local: &net.TCPAddr{IP: net.ParseIP(srvIP)}}
	t.Cleanup(func() { sl.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := sl.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dialFrom := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
		c, err := d.Dial("tcp", ln.Addr().String())
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

	fromPeer := dialFrom(peerIP)
	fromOther := dialFrom(otherIP)
	<-accepted
	<-accepted
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
	if _, err := sl.Dial(raft.ServerAddress(peerIP+":7947"), time.Second); !errors.Is(err, errBlocked) {
		t.Errorf("dial to blocked peer: err = %v, want errBlocked", err)
	}
	// A new connection from the blocked peer is accepted by the kernel and closed by the stream layer.
	if !closedByPeer(dialFrom(peerIP)) {
		t.Error("new connection from the blocked peer was not refused")
	}

	p.Block(otherIP) // replaces, not adds
	if p.filter().isBlocked(peerIP) || !p.filter().isBlocked(otherIP) {
		t.Error("Block did not replace the blocked set")
	}
	p.Heal()
	if p.filter().isBlocked(otherIP) {
		t.Error("Heal left a peer blocked")
	}
	dialFrom(peerIP)
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Error("connection after Heal was not accepted")
	}
}
