//go:build linux

package flowfwd

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file turns the desired state into nftables objects: one table per address family, each with one
// prerouting chain (priority mangle, -150: after conntrack at -200, so the ct mark is there; before any DNAT
// at -100, so the destination is still the VIP) and up to three rules:
//
//	mark:    tcp to @mark_vips:@mark_ports, flags (fin|syn|rst|ack) == syn  → counter, ct mark |= CtMark
//	local:   tcp to @fwd_vips:@fwd_ports, ct mark & CtMark != 0            → accept
//	forward: tcp to @fwd_vips:@fwd_ports, no syn, socket wildcard == 1     → counter, dup to PEER device IF, drop
//
// The rules' user data carries a tag, so their counters can be read back.

// Rule tags, stored as each rule's user data.
const (
	tagMark    = "vipd:mark"
	tagLocal   = "vipd:local"
	tagForward = "vipd:forward"
)

// chainName is the one chain in each table.
const chainName = "prerouting"

// family describes what differs between the ip and the ip6 table.
type family struct {
	nft      nftables.TableFamily
	is4      bool
	daddrOff uint32 // offset of the destination address in the network header
	addrType nftables.SetDatatype
}

func families() [2]family {
	return [2]family{
		{nft: nftables.TableFamilyIPv4, is4: true, daddrOff: 16, addrType: nftables.TypeIPAddr},
		{nft: nftables.TableFamilyIPv6, is4: false, daddrOff: 24, addrType: nftables.TypeIP6Addr},
	}
}

func (f family) table() *nftables.Table { return &nftables.Table{Name: TableName, Family: f.nft} }

func (f family) chain() *nftables.Chain {
	return &nftables.Chain{Name: chainName, Table: f.table()}
}

func (f family) String() string {
	if f.is4 {
		return "ip"
	}
	return "ip6"
}

// TCP flag bits in the 14th byte of the TCP header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// queueReplace appends to c's batch the messages that replace f's table by one holding marks and fwd (none
// at all when both are empty). Delete-then-add in one batch is nftables' atomic replacement: a packet sees
// the old rules or the new ones, never none. The leading add makes the delete succeed when there is no table.
func (f family) queueReplace(c *nftables.Conn, ctMark uint32, marks selector, fwd *target) error {
	t := f.table()
	c.AddTable(t)
	c.DelTable(t)
	if marks.empty() && fwd == nil {
		return nil
	}
	c.AddTable(t)
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name:     chainName,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityMangle,
		Policy:   &policy,
	})
	if !marks.empty() {
		vips, ports, err := f.addSets(c, t, "mark", marks)
		if err != nil {
			return err
		}
		exprs := f.tcpTo(vips, ports)
		exprs = append(exprs, tcpFlags(tcpFIN|tcpSYN|tcpRST|tcpACK, tcpSYN)...)
		exprs = append(exprs, &expr.Counter{})
		exprs = append(exprs, ctMarkOr(ctMark)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs, UserData: []byte(tagMark)})
	}
	if fwd != nil {
		vips, ports, err := f.addSets(c, t, "fwd", fwd.sel)
		if err != nil {
			return err
		}
		local := f.tcpTo(vips, ports)
		local = append(local, ctMarkHas(ctMark)...)
		local = append(local, &expr.Verdict{Kind: expr.VerdictAccept})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: local, UserData: []byte(tagLocal)})

		exprs := f.tcpTo(vips, ports)
		exprs = append(exprs, tcpFlags(tcpSYN, 0)...)
		// The stack's own verdict: the lookup finds an established, request or time-wait socket for a flow
		// it knows, and only the wildcard listener for one it does not. No socket at all (no listener)
		// breaks the rule, so nothing is forwarded then.
		exprs = append(exprs,
			&expr.Socket{Key: expr.SocketKeyWildcard, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
			&expr.Counter{},
			&expr.Immediate{Register: 1, Data: fwd.peer.AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.NativeEndian.PutUint32(uint32(fwd.index))},
			&expr.Dup{RegAddr: 1, RegDev: 2, IsRegDevSet: true},
			&expr.Verdict{Kind: expr.VerdictDrop}, // or the stack here answers the copy's original with RST
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs, UserData: []byte(tagForward)})
	}
	return nil
}

// addSets queues the named sets <prefix>_vips and <prefix>_ports holding sel.
func (f family) addSets(c *nftables.Conn, t *nftables.Table, prefix string, sel selector) (vips, ports *nftables.Set, err error) {
	vips = &nftables.Set{Table: t, Name: prefix + "_vips", KeyType: f.addrType}
	var ve []nftables.SetElement
	for _, v := range sel.vips {
		ve = append(ve, nftables.SetElement{Key: v.AsSlice()})
	}
	if err := c.AddSet(vips, ve); err != nil {
		return nil, nil, fmt.Errorf("queue set %s %s: %w", f, vips.Name, err)
	}
	ports = &nftables.Set{Table: t, Name: prefix + "_ports", KeyType: nftables.TypeInetService}
	var pe []nftables.SetElement
	for _, p := range sel.ports {
		pe = append(pe, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	if err := c.AddSet(ports, pe); err != nil {
		return nil, nil, fmt.Errorf("queue set %s %s: %w", f, ports.Name, err)
	}
	return vips, ports, nil
}

// tcpTo matches TCP segments whose destination address is in vips and destination port in ports.
func (f family) tcpTo(vips, ports *nftables.Set) []expr.Any {
	addrLen := uint32(4)
	if !f.is4 {
		addrLen = 16
	}
	return []expr.Any{
		// meta l4proto, not the header's next protocol: it sees through IPv6 extension headers.
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: addrLen},
		&expr.Lookup{SourceRegister: 1, SetName: vips.Name, SetID: vips.ID},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID},
	}
}

// tcpFlags matches segments whose flags masked by mask equal want.
func tcpFlags(mask, want byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{want}},
	}
}

// ctMarkOr sets bit in the packet's conntrack mark and keeps every other bit (no-op without conntrack).
func ctMarkOr(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		// nftables' "x | bit" is (x & ^bit) ^ bit.
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	}
}

// ctMarkHas matches packets whose conntrack mark has bit; a packet without conntrack does not match.
func ctMarkHas(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(bit)},
	}
}
