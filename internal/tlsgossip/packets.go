package tlsgossip

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

const (
	// queueLen bounds the packets waiting for one destination: memberlist sends a few per probe and gossip
	// round, so 64 only fill while the peer cannot take them, and then fresh ones beat stale ones anyway.
	queueLen = 64
	// destIdle closes a destination unused this long (memberlist stopped talking to that node).
	destIdle = time.Minute
	// Back-off after a failed dial: packets to the destination are dropped for this long, doubling.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
	// maxBatch bounds the frames coalesced into one write.
	maxBatch = 64 << 10
)

// destKey identifies a destination: memberlist's address and, when given, the node it expects there.
type destKey struct{ addr, name string }

// dest is one destination's queue; its writer goroutine (runDest) owns the connection.
type dest struct {
	key       destKey
	q         chan []byte
	downUntil atomic.Int64 // UnixNano until which packets are dropped (after a failed dial)
}

func (d *dest) down(now time.Time) bool { return now.UnixNano() < d.downUntil.Load() }

// WriteTo queues a packet for addr. See memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress queues a packet for a.Addr and returns at once; it is dropped, like a datagram, when the
// destination's queue is full, the destination is unreachable, or Allow refuses it. Only a packet of 0 or
// more than MaxPacketSize bytes, or a call after Shutdown, is an error. See memberlist.NodeAwareTransport.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if len(b) == 0 || len(b) > MaxPacketSize {
		return now, fmt.Errorf("gossip packet of %d bytes to %s: want 1 to %d", len(b), a.Addr, MaxPacketSize)
	}
	if !t.allow(a.Addr) {
		t.stats.dropped.Add(1)
		return now, nil
	}
	frame := make([]byte, 4+len(b)) // copied: memberlist may reuse b once we return
	binary.BigEndian.PutUint32(frame, uint32(len(b)))
	copy(frame[4:], b)

	key := destKey{a.Addr, a.Name}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return now, ErrClosed
	}
	d := t.dests[key]
	if d == nil {
		d = &dest{key: key, q: make(chan []byte, queueLen)}
		t.dests[key] = d
		t.wg.Add(1)
		go t.runDest(d)
	}
	if d.down(now) {
		t.stats.dropped.Add(1)
		return now, nil
	}
	select {
	case d.q <- frame:
	default:
		t.stats.dropped.Add(1)
	}
	return now, nil
}

// peerSeen clears the back-off of destinations at ip: the peer just connected to us, so it is up again
// (a restarted node is then probed at once instead of after the back-off).
func (t *Transport) peerSeen(ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, d := range t.dests {
		if hostOf(k.addr) == ip {
			d.downUntil.Store(0)
		}
	}
}

// packetConn is the writer's connection and a signal that the peer closed it.
type packetConn struct {
	tc      *tls.Conn
	raw     net.Conn
	dead    chan struct{} // closed when the reader saw the connection end
	retires time.Time     // replaced from then on, before the acceptor's MaxConnAge cuts it
}

// runDest is a destination's writer: it dials on demand, writes queued frames, and ends at Shutdown or when
// the destination has been idle for destIdle.
func (t *Transport) runDest(d *dest) {
	defer t.wg.Done()
	var (
		pc      *packetConn
		backoff time.Duration
		buf     []byte
	)
	closePC := func() {
		if pc != nil {
			t.closeConn(pc.raw)
			pc = nil
		}
	}
	defer closePC()
	idle := time.NewTimer(destIdle)
	defer idle.Stop()
	for {
		var dead <-chan struct{}
		if pc != nil {
			dead = pc.dead
		}
		select {
		case <-t.ctx.Done():
			return
		case <-dead:
			closePC()
		case <-idle.C:
			t.mu.Lock()
			if len(d.q) == 0 {
				delete(t.dests, d.key)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			idle.Reset(destIdle)
		case f := <-d.q:
			idle.Reset(destIdle)
			if pc != nil {
				select {
				case <-pc.dead: // closed by the peer meanwhile: redial rather than lose this packet
					closePC()
				default:
					if !time.Now().Before(pc.retires) {
						closePC()
					}
				}
			}
			if pc == nil {
				var err error
				if pc, err = t.dialPackets(d); err != nil {
					backoff = min(max(2*backoff, minBackoff), maxBackoff)
					d.downUntil.Store(time.Now().Add(backoff).UnixNano())
					t.stats.dropped.Add(1 + int64(drain(d.q)))
					// peer_node, not node: the cluster's logger already carries this node's own name as node.
					t.log.Debug("gossip: peer unreachable, dropping its packets", "peer", d.key.addr, "peer_node", d.key.name,
						"for", backoff, "err", err)
					continue
				}
				backoff = 0
			}
			buf = append(buf[:0], f...)
			n := int64(1)
		batch:
			for len(buf) < maxBatch {
				select {
				case f := <-d.q:
					buf = append(buf, f...)
					n++
				default:
					break batch
				}
			}
			pc.raw.SetWriteDeadline(time.Now().Add(t.timeout))
			if _, err := pc.tc.Write(buf); err != nil {
				t.stats.dropped.Add(n)
				t.log.Debug("gossip: packet write failed; reconnecting on the next packet", "peer", d.key.addr, "err", err)
				closePC()
				continue
			}
			t.stats.sent.Add(n)
			if cap(buf) > 2*maxBatch {
				buf = nil // do not keep a rare large batch's memory
			}
		}
	}
}

// dialPackets opens a packet connection and starts its reader, which only watches for the peer closing it.
func (t *Transport) dialPackets(d *dest) (*packetConn, error) {
	tc, raw, err := t.dial(memberlist.Address{Addr: d.key.addr, Name: d.key.name}, modePacket, t.timeout)
	if err != nil {
		return nil, err
	}
	pc := &packetConn{tc: tc, raw: raw, dead: make(chan struct{}), retires: time.Now().Add(t.maxAge * 9 / 10)}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(pc.dead)
		var b [1]byte
		tc.Read(b[:]) // the peer never sends on a packet connection: any return means it ended
	}()
	return pc, nil
}

// drain empties q and returns how many frames it dropped.
func drain(q chan []byte) int {
	n := 0
	for {
		select {
		case <-q:
			n++
		default:
			return n
		}
	}
}
