package rogue

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/packet"
)

// The ARP side of the attacker: a host on the VIP's segment that floods it with malformed ARP frames (the
// hardware length 255 of issue 8, and other garbage) and with well-formed ARP that is not for the VIP, so a
// test can check that the VIP holder's responder keeps answering the real clients. It never answers for the
// VIP itself: a host that does can always take the VIP's traffic (that is what L2 allows), which is outside
// what vipd can defend.

var broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// rogueMAC is a locally administered MAC of kind (0x66 malformed, 0x65 foreign, 0x64 their peers); a few
// hundred of them keep the bridge's forwarding table small.
func rogueMAC(kind byte, k int) [6]byte { return [6]byte{0x02, kind, 0, 0, byte(k >> 8), byte(k)} }

// neighbour is an address of the VIP's /24 other than the VIP (x.x.x.200-249, or 150-199 if the VIP is
// among those).
func neighbour(vip netip.Addr, k int) netip.Addr {
	a := vip.As4()
	base := byte(200)
	if a[3] >= 200 {
		base = 150
	}
	a[3] = base + byte(k%50)
	return netip.AddrFrom4(a)
}

// ARPFrame builds an Ethernet frame carrying an Ethernet/IPv4 ARP packet.
func ARPFrame(dst, src [6]byte, op uint16, sha [6]byte, spa netip.Addr, tha [6]byte, tpa netip.Addr) []byte {
	b := append(append([]byte{}, dst[:]...), src[:]...)
	b = append(b, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4)
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(b, sha[:]...)
	b = append(b, spa.AsSlice()...)
	b = append(b, tha[:]...)
	return append(b, tpa.AsSlice()...)
}

// MalformedARP returns broadcast ARP frames that no parser may accept, most of them asking for vip: hardware
// length 255, protocol length 16, hardware type 6, protocol IPv6, operation 0, cut in the sender's address
// or before the end of the target's, a bare Ethernet header, and random bytes.
func MalformedARP(vip netip.Addr) [][]byte {
	rnd := rand.New(rand.NewPCG(1, 2)) // the same garbage every run
	var out [][]byte
	for k := range 320 {
		m := rogueMAC(0x66, k)
		f := ARPFrame(broadcast, m, 1, m, neighbour(vip, k), [6]byte{}, vip)
		switch k % 10 {
		case 0: // the frame of the report: hardware length 255
			f[18] = 0xff
			f = append(f, make([]byte, 18)...)
		case 1:
			f[19] = 16 // protocol length
		case 2:
			f[15] = 6 // hardware type
		case 3:
			f[16], f[17] = 0x86, 0xdd // protocol IPv6
		case 4:
			f[20], f[21] = 0, 0 // operation 0
		case 5:
			f = f[:30] // cut in the sender's address
		case 6:
			f = f[:40] // cut before the end of the target's address
		case 7:
			f = f[:14] // an Ethernet header and nothing else
		case 8, 9: // random bytes after the ARP ethertype
			f = append(f[:14], make([]byte, 1+rnd.IntN(80))...)
			for i := 14; i < len(f); i++ {
				f[i] = byte(rnd.Uint32())
			}
		}
		out = append(out, f)
	}
	return out
}

// ForeignARP returns well-formed ARP frames of the segment that are not requests for vip: requests for
// other addresses, replies between other hosts, gratuitous ARP for other addresses, and (one in a hundred)
// a gratuitous ARP by one of four other MACs announcing vip itself, a conflict the holder must log (rate
// limited) but not act on.
func ForeignARP(vip netip.Addr) [][]byte {
	var out [][]byte
	for k := range 400 {
		m := rogueMAC(0x65, k)
		var f []byte
		switch r := k % 100; {
		case r < 40:
			f = ARPFrame(broadcast, m, 1, m, neighbour(vip, k), [6]byte{}, neighbour(vip, k+7))
		case r < 70:
			peer := rogueMAC(0x64, k)
			f = ARPFrame(peer, m, 2, m, neighbour(vip, k), peer, neighbour(vip, k+3))
		case r < 99:
			f = ARPFrame(broadcast, m, 1, m, neighbour(vip, k), [6]byte{}, neighbour(vip, k))
		default:
			bad := [6]byte{0x02, 0xba, 0xd0, 0, 0, byte(k / 100)}
			f = ARPFrame(broadcast, bad, 1, bad, vip, [6]byte{}, vip)
		}
		out = append(out, f)
	}
	return out
}

// ARPFlood is a flood of MalformedARP and ForeignARP frames for VIP out of Iface.
type ARPFlood struct {
	// Iface is the attacker's interface on the VIP's segment.
	Iface string
	// VIP is the address under attack.
	VIP netip.Addr
	// Rate is the frames per second of each kind (malformed, foreign).
	Rate int
	// Duration is the most it floods; a cancelled context ends it earlier.
	Duration time.Duration
}

// FloodReport is what a flood sent.
type FloodReport struct {
	Malformed, Foreign, Errors int
	Elapsed                    time.Duration
}

// FramesPerSecond is the rate the flood reached, both kinds together.
func (r FloodReport) FramesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Malformed+r.Foreign) / r.Elapsed.Seconds()
}

// Run floods until ctx is done or Duration has passed, and reports what it sent. ready, if not nil, is
// called once the socket is open, just before the first frame.
func (f ARPFlood) Run(ctx context.Context, ready func()) (FloodReport, error) {
	var rep FloodReport
	if f.Rate <= 0 || f.Duration <= 0 {
		return rep, fmt.Errorf("rogue ARP flood: rate %d and duration %v must be positive", f.Rate, f.Duration)
	}
	ifi, err := net.InterfaceByName(f.Iface)
	if err != nil {
		return rep, fmt.Errorf("rogue ARP flood: %w", err)
	}
	c, err := packet.Listen(ifi, packet.Raw, 0, nil) // protocol 0: it sends and receives nothing
	if err != nil {
		return rep, fmt.Errorf("rogue ARP flood: %w", err)
	}
	defer c.Close()
	malformed, foreign := MalformedARP(f.VIP), ForeignARP(f.VIP)
	dst := &packet.Addr{HardwareAddr: net.HardwareAddr(broadcast[:])}
	send := func(b []byte) {
		if _, err := c.WriteTo(b, dst); err != nil {
			rep.Errors++
		}
	}
	if ready != nil {
		ready()
	}
	// Every millisecond a thousandth of the rate of each kind. A sender that falls behind (a busy machine)
	// catches up by at most 100 ms, never in one long burst; the count is bounded as well as the time.
	batch := max(1, f.Rate/1000)
	limit := f.Rate * int(f.Duration/time.Second+1)
	start := time.Now()
	next := start
	tick := time.NewTimer(0)
	defer tick.Stop()
	for time.Since(start) < f.Duration && rep.Malformed < limit {
		select {
		case <-ctx.Done():
			rep.Elapsed = time.Since(start)
			return rep, nil
		default:
		}
		for range batch {
			send(malformed[rep.Malformed%len(malformed)])
			rep.Malformed++
			send(foreign[rep.Foreign%len(foreign)])
			rep.Foreign++
		}
		next = next.Add(time.Millisecond)
		switch d := time.Until(next); {
		case d > 0:
			tick.Reset(d)
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		case d < -100*time.Millisecond:
			next = time.Now()
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}
