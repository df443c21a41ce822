package vip

import (
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// maxFilterVIPs is the most IPv4 VIPs the ARP filter matches by address: a classic BPF jump skips at most
// 255 instructions, and the filter compares each VIP twice. With more VIPs the filter checks the frame's
// shape only and DecideARP alone matches addresses.
const maxFilterVIPs = 100

// arpSnapLen is how much of an accepted frame the kernel queues: an Ethernet/IPv4 ARP frame is 42 bytes
// (60 with padding); anything beyond is not looked at.
const arpSnapLen = 128

// packetOutgoing is the kernel's PACKET_OUTGOING packet type: a frame this host sends, which a packet
// socket also sees.
const packetOutgoing = 4

// arpFilter is the classic BPF program for the ARP packet socket. It passes only what DecideARP may answer
// or report: incoming Ethernet/IPv4 ARP requests and replies (hardware type 1, protocol 0x0800, lengths 6
// and 4) whose target or sender IP is one of vips — requests for a VIP, and announcements of a VIP by
// another host, which are conflicts to report. Everything else, including malformed frames and our own
// outgoing frames, is dropped in the kernel before it costs the agent anything.
//
// withPktType adds the outgoing-frame check, which needs a Linux ancillary load that x/net/bpf's VM cannot
// run; tests of the program in that VM leave it out.
func arpFilter(vips []netip.Addr, withPktType bool) ([]bpf.RawInstruction, error) {
	var p filterProg
	if withPktType {
		p.add(bpf.LoadExtension{Num: bpf.ExtType})
		p.jumpIf(packetOutgoing, labelDrop, labelNext)
	}
	// Shorter than an ARP frame: drop, or a frame cut after the sender IP could match on it alone.
	p.add(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jumpIfCond(bpf.JumpGreaterOrEqual, arpFrameLen, labelNext, labelDrop)
	for _, c := range []struct {
		off uint32
		val uint32
	}{
		{offEthType, etherTypeARP},
		{offHType, arpHTEthernet},
		{offPType, etherTypeIPv4},
		{offHLen, 6<<8 | 4}, // hardware and protocol lengths in one half-word
	} {
		p.add(bpf.LoadAbsolute{Off: c.off, Size: 2})
		p.jumpIf(c.val, labelNext, labelDrop)
	}
	p.add(bpf.LoadAbsolute{Off: offOp, Size: 2})
	if len(vips) > maxFilterVIPs {
		p.jumpIf(arpOpRequest, labelAccept, labelNext)
		p.jumpIf(arpOpReply, labelAccept, labelDrop)
	} else {
		p.jumpIf(arpOpRequest, labelSkip1, labelNext) // to the sender-IP checks
		p.jumpIf(arpOpReply, labelNext, labelDrop)
		for _, off := range []uint32{offSPA, offTPA} {
			p.add(bpf.LoadAbsolute{Off: off, Size: 4})
			for _, ip := range vips {
				if !ip.Is4() {
					continue
				}
				b := ip.As4()
				p.jumpIf(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]), labelAccept, labelNext)
			}
		}
		p.jump(labelDrop) // no VIP matched
	}
	return p.assemble()
}

// Jump targets of filterProg: the next instruction, the one after it, or the final accept/drop returns.
const (
	labelNext = iota
	labelSkip1
	labelAccept
	labelDrop
)

// filterIns is one instruction: a plain one (ins), a "jump if A cond val" to labels, or a jump to a label.
type filterIns struct {
	ins             bpf.Instruction
	kind            int // plain, jumpIf or jump
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
type filterProg struct{ ins []filterIns }

func (p *filterProg) add(i bpf.Instruction) { p.ins = append(p.ins, filterIns{ins: i}) }

func (p *filterProg) jumpIf(val uint32, onTrue, onFalse int) {
	p.jumpIfCond(bpf.JumpEqual, val, onTrue, onFalse)
}

func (p *filterProg) jumpIfCond(cond bpf.JumpTest, val uint32, onTrue, onFalse int) {
	p.ins = append(p.ins, filterIns{kind: insJumpIf, cond: cond, val: val, onTrue: onTrue, onFalse: onFalse})
}

func (p *filterProg) jump(to int) { p.ins = append(p.ins, filterIns{kind: insJump, onTrue: to}) }

func (p *filterProg) assemble() ([]bpf.RawInstruction, error) {
	accept, drop := len(p.ins), len(p.ins)+1
	skip := func(i, label int) (uint32, error) {
		var to int
		switch label {
		case labelNext:
			to = i + 1
		case labelSkip1:
			to = i + 2
		case labelAccept:
			to = accept
		default:
			to = drop
		}
		s := to - i - 1
		if s < 0 || s > 255 {
			return 0, fmt.Errorf("ARP filter: jump of %d instructions out of range", s)
		}
		return uint32(s), nil
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
	out = append(out, bpf.RetConstant{Val: arpSnapLen}, bpf.RetConstant{Val: 0})
	raw, err := bpf.Assemble(out)
	if err != nil {
		return nil, fmt.Errorf("assemble ARP filter: %w", err)
	}
	return raw, nil
}
