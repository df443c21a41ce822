package vip

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// The kernel filters of the responder's sockets. They keep a flood of frames we would drop anyway out of
// the process; DecideARP and DecideNDP still judge everything that passes (the filters are a cost
// measure, the decision functions the authority), so a filter may pass too much but never too little.

// Limits of the address matches: a classic BPF jump skips at most 255 instructions. With more VIPs a
// filter checks the packet's shape only and the decision function alone matches addresses.
const (
	maxARPFilterVIPs = 100 // two comparisons per VIP
	maxNDPFilterVIPs = 30  // eight instructions per VIP
)

// arpSnapLen is how much of an accepted frame the kernel queues: an Ethernet/IPv4 ARP frame is 42 bytes
// (60 with padding); anything beyond is not looked at.
const arpSnapLen = 128

// ndpSnapLen is how much of an accepted ICMPv6 message is queued: all of it, as options are checked.
const ndpSnapLen = 0xffff

// packetOutgoing is the kernel's PACKET_OUTGOING packet type: a frame this host sends, which a packet
// socket also sees.
const packetOutgoing = 4

// arpFilter is the program for the ARP packet socket. It passes only what DecideARP may answer or report:
// incoming Ethernet/IPv4 ARP requests and replies (hardware type 1, protocol 0x0800, lengths 6 and 4, at
// least 42 bytes) whose target or sender IP is one of vips — requests for a VIP, and announcements of a
// VIP by another host, which are conflicts to report. Malformed frames, ARP for other addresses and our
// own outgoing frames are dropped in the kernel.
//
// withPktType adds the outgoing-frame check, which needs a Linux ancillary load that x/net/bpf's VM cannot
// run; tests of the program in that VM leave it out.
func arpFilter(vips []netip.Addr, withPktType bool) ([]bpf.RawInstruction, error) {
	var p filterProg
	if withPktType {
		p.add(bpf.LoadExtension{Num: bpf.ExtType})
		p.jumpIf(bpf.JumpEqual, packetOutgoing, labelDrop, labelNext)
	}
	// Shorter than an ARP frame: drop, or a frame cut after the sender IP could match on it alone.
	p.add(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jumpIf(bpf.JumpGreaterOrEqual, arpFrameLen, labelNext, labelDrop)
	for _, c := range []struct{ off, val uint32 }{
		{offEthType, etherTypeARP},
		{offHType, arpHTEthernet},
		{offPType, etherTypeIPv4},
		{offHLen, 6<<8 | 4}, // hardware and protocol lengths in one half-word
	} {
		p.add(bpf.LoadAbsolute{Off: c.off, Size: 2})
		p.jumpIf(bpf.JumpEqual, c.val, labelNext, labelDrop)
	}
	var v4 []netip.Addr
	for _, ip := range vips {
		if ip.Is4() {
			v4 = append(v4, ip)
		}
	}
	p.add(bpf.LoadAbsolute{Off: offOp, Size: 2})
	if len(v4) > maxARPFilterVIPs {
		p.jumpIf(bpf.JumpEqual, arpOpRequest, labelAccept, labelNext)
		p.jumpIf(bpf.JumpEqual, arpOpReply, labelAccept, labelDrop)
		return p.assemble(arpSnapLen)
	}
	addrs := p.newLabel()
	p.jumpIf(bpf.JumpEqual, arpOpRequest, addrs, labelNext)
	p.jumpIf(bpf.JumpEqual, arpOpReply, labelNext, labelDrop)
	p.mark(addrs)
	for _, off := range []uint32{offSPA, offTPA} {
		p.add(bpf.LoadAbsolute{Off: off, Size: 4})
		for _, ip := range v4 {
			b := ip.As4()
			p.jumpIf(bpf.JumpEqual, binary.BigEndian.Uint32(b[:]), labelAccept, labelNext)
		}
	}
	p.jump(labelDrop) // no VIP matched
	return p.assemble(arpSnapLen)
}

// ndpFilter is the program for the ICMPv6 socket, which sees the ICMPv6 message (the kernel has checked
// its checksum). It passes only neighbour solicitations (type 135, code 0, at least 24 bytes) whose target
// is one of vips. The hop limit and the options are left to DecideNDP, which reads the hop limit from the
// control message as RFC 4861 §7.1.1 asks.
func ndpFilter(vips []netip.Addr) ([]bpf.RawInstruction, error) {
	var p filterProg
	p.add(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jumpIf(bpf.JumpGreaterOrEqual, nsLen, labelNext, labelDrop)
	p.add(bpf.LoadAbsolute{Off: 0, Size: 2}) // type and code
	p.jumpIf(bpf.JumpEqual, icmpTypeNeighborSolicitation<<8, labelNext, labelDrop)
	var v6 []netip.Addr
	for _, ip := range vips {
		if ip.Is6() && !ip.Is4In6() {
			v6 = append(v6, ip)
		}
	}
	if len(v6) > maxNDPFilterVIPs {
		p.jump(labelAccept)
		return p.assemble(ndpSnapLen)
	}
	for _, ip := range v6 {
		next := p.newLabel()
		b := ip.As16()
		for w := range 4 {
			p.add(bpf.LoadAbsolute{Off: 8 + 4*uint32(w), Size: 4}) // the target address, word by word
			onMatch := labelNext
			if w == 3 {
				onMatch = labelAccept
			}
			p.jumpIf(bpf.JumpEqual, binary.BigEndian.Uint32(b[4*w:]), onMatch, next)
		}
		p.mark(next)
	}
	p.jump(labelDrop) // no VIP matched
	return p.assemble(ndpSnapLen)
}

// Labels of filterProg: the next instruction, and the final accept and drop returns; newLabel makes more.
const (
	labelNext = iota
	labelAccept
	labelDrop
	firstFreeLabel
)

// filterIns is one instruction: a plain one (ins), a "jump if A cond val" to labels, or a jump to a label.
type filterIns struct {
	ins             bpf.Instruction
	kind            int // insPlain, insJumpIf or insJump
	cond            bpf.JumpTest
	val             uint32
	onTrue, onFalse int // labels; onTrue alone for an unconditional jump
}

const (
	insPlain = iota
	insJumpIf
	insJump
)

// filterProg assembles a program whose jumps name labels, resolved once its length is known.
type filterProg struct {
	ins    []filterIns
	labels map[int]int // label -> instruction index
	next   int
}

func (p *filterProg) add(i bpf.Instruction) { p.ins = append(p.ins, filterIns{ins: i}) }

func (p *filterProg) jumpIf(cond bpf.JumpTest, val uint32, onTrue, onFalse int) {
	p.ins = append(p.ins, filterIns{kind: insJumpIf, cond: cond, val: val, onTrue: onTrue, onFalse: onFalse})
}

func (p *filterProg) jump(to int) { p.ins = append(p.ins, filterIns{kind: insJump, onTrue: to}) }

func (p *filterProg) newLabel() int {
	if p.next < firstFreeLabel {
		p.next = firstFreeLabel
	}
	p.next++
	return p.next - 1
}

// mark binds label to the next instruction added.
func (p *filterProg) mark(label int) {
	if p.labels == nil {
		p.labels = make(map[int]int)
	}
	p.labels[label] = len(p.ins)
}

// assemble resolves the labels and appends "accept snapLen bytes" and "drop".
func (p *filterProg) assemble(snapLen uint32) ([]bpf.RawInstruction, error) {
	accept, drop := len(p.ins), len(p.ins)+1
	skip := func(i, label int) (uint32, error) {
		to, ok := i+1, true
		switch label {
		case labelNext:
		case labelAccept:
			to = accept
		case labelDrop:
			to = drop
		default:
			to, ok = p.labels[label]
		}
		if s := to - i - 1; ok && s >= 0 && s <= 255 {
			return uint32(s), nil
		}
		return 0, fmt.Errorf("kernel filter: jump from instruction %d to label %d out of range", i, label)
	}
	out := make([]bpf.Instruction, 0, len(p.ins)+2)
	for i, in := range p.ins {
		switch in.kind {
		case insJumpIf:
			t, err := skip(i, in.onTrue)
			if err != nil {
				return nil, err
			}
			f, err := skip(i, in.onFalse)
			if err != nil {
				return nil, err
			}
			out = append(out, bpf.JumpIf{Cond: in.cond, Val: in.val, SkipTrue: uint8(t), SkipFalse: uint8(f)})
		case insJump:
			s, err := skip(i, in.onTrue)
			if err != nil {
				return nil, err
			}
			out = append(out, bpf.Jump{Skip: s})
		default:
			out = append(out, in.ins)
		}
	}
	out = append(out, bpf.RetConstant{Val: snapLen}, bpf.RetConstant{Val: 0})
	raw, err := bpf.Assemble(out)
	if err != nil {
		return nil, fmt.Errorf("assemble kernel filter: %w", err)
	}
	return raw, nil
}
