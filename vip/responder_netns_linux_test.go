//go:build linux

package vip_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	itest "github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip"
)

// The flood figures of issue 8: under 20,000 malformed plus 20,000 foreign frames per second, at least
// 99 % of a client's requests for the VIP are answered, the responder never stops, and its process's CPU
// stays bounded. maxResponderCPU is a generous bound, there to catch a busy loop or a log line per frame:
// the measured figures are logged (ARP through the kernel filter: 3–12 % of a core; NDP, whose malformed
// solicitations reach the process: 20–40 %). ARP without the filter (a test-only mode: every flood frame
// through DecideARP) measured 70–76 % on this two-core machine, with and without -race, so it gets
// maxUnfilteredCPU: still below the full core a busy loop takes.
const (
	floodRate        = 20000 // frames per second of each kind
	minAnswered      = 0.99
	maxResponderCPU  = 0.75 // CPU-seconds per second of flood for the whole test process (client included)
	maxUnfilteredCPU = 0.95
	probeRequests    = 200
	probeRequesters  = 40 // distinct requesters, so each stays under the per-requester reply limit
	// probeTimeout is how long a request waits for its reply: a reply within a second is one the client
	// uses, as Linux retransmits an unanswered ARP request or solicitation after 1 s (retrans_time).
	probeTimeout = time.Second
	// floodLimit bounds the attacker; the test stops it as soon as the client is done.
	floodLimit = 2 * time.Minute
)

// floodLAN is newLAN(1) plus an attacker namespace plugged into the same bridge through "ax0".
func floodLAN(t *testing.T) (l *lan, node, attacker *testNS) {
	t.Helper()
	l = newLAN(t, 1)
	attacker = newNS(t, "x")
	sh(t, "ip", "-n", l.client.name, "link", "add", "v9", "type", "veth", "peer", "name", "ax0", "netns", attacker.name)
	sh(t, "ip", "-n", l.client.name, "link", "set", "v9", "master", "br0", "up")
	attacker.sysctl(t, "net.ipv6.conf.ax0.disable_ipv6=1") // the attacker's own kernel stays silent
	sh(t, "ip", "-n", attacker.name, "link", "set", "ax0", "up")
	return l, l.nodes[0], attacker
}

// responderRig is a LinuxKernel answering for one VIP in the node namespace, with metrics and a log sink.
type responderRig struct {
	k    *vip.LinuxKernel
	reg  *prometheus.Registry
	log  *itest.LogSink
	done <-chan struct{}
	err  error // Answer's result, once done is closed
}

func startResponder(t *testing.T, n *testNS, p netip.Prefix, opts ...vip.KernelOption) *responderRig {
	t.Helper()
	r := &responderRig{reg: prometheus.NewRegistry(), log: itest.NewLogSink(t)}
	opts = append(opts, vip.WithKernelMetrics(vip.NewMetrics(r.reg)))
	var err error
	n.do(t, func() { r.k, err = vip.NewLinuxKernel(n.ifname, r.log.Logger(slog.LevelInfo), opts...) })
	if err != nil {
		t.Fatalf("NewLinuxKernel: %v", err)
	}
	t.Cleanup(func() { r.k.Close() })
	if err := r.k.AddAddr(p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.done = n.start(t, func() { r.err = r.k.Answer(ctx, []netip.Addr{p.Addr()}, func() bool { return true }) })
	t.Cleanup(func() {
		cancel()
		<-r.done
		if r.err != nil {
			t.Errorf("Answer returned %v", r.err)
		}
	})
	return r
}

// running fails the test if Answer has returned.
func (r *responderRig) running(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		t.Fatalf("the responder stopped: Answer returned %v", r.err)
	default:
	}
}

func (r *responderRig) counter(t *testing.T, name, label string) float64 {
	t.Helper()
	return counterValue(t, r.reg, name, label)
}

// probeStats is what a client's requests got.
type probeStats struct {
	sent, answered int
	latencies      []time.Duration
}

func (s probeStats) share() float64 { return float64(s.answered) / float64(s.sent) }

func (s probeStats) String() string {
	if len(s.latencies) == 0 {
		return fmt.Sprintf("answered %d/%d", s.answered, s.sent)
	}
	l := slices.Sorted(slices.Values(s.latencies))
	return fmt.Sprintf("answered %d/%d (%.1f %%), latency median %v, max %v", s.answered, s.sent,
		100*s.share(), l[len(l)/2].Round(time.Microsecond), l[len(l)-1].Round(time.Microsecond))
}

// pace is the gap between a client's requests: 5 to 10 ms.
func pace(i int) time.Duration { return time.Duration(5+i%6) * time.Millisecond }

// arpProbe sends n ARP requests for ip from the client's bridge, from requesters different MACs and
// addresses in turn, one at a time, each waiting up to timeout for its reply. The client reads only ARP
// replies from ip (a filter on its own socket), so the flood costs the probe nothing.
func arpProbe(t *testing.T, l *lan, ip netip.Addr, n, requesters int, timeout time.Duration) probeStats {
	t.Helper()
	var s probeStats
	l.client.do(t, func() {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			t.Error(err)
			return
		}
		v := ip.As4()
		f, err := bpf.Assemble([]bpf.Instruction{
			bpf.LoadAbsolute{Off: 12, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_ARP, SkipFalse: 5},
			bpf.LoadAbsolute{Off: 20, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipFalse: 3}, // replies
			bpf.LoadAbsolute{Off: 28, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(v[:]), SkipFalse: 1}, // from the VIP
			bpf.RetConstant{Val: 128},
			bpf.RetConstant{Val: 0},
		})
		if err != nil {
			t.Error(err)
			return
		}
		c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: f})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		// Replies go to the requesters' made-up MACs, which only a promiscuous bridge delivers locally.
		if err := c.SetPromiscuous(true); err != nil {
			t.Error(err)
			return
		}
		bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		buf := make([]byte, 128)
		for i := range n {
			mac := [6]byte{0x02, 0x77, 0, 0, 0, byte(i % requesters)}
			from := netip.AddrFrom4([4]byte{10, 77, 0, byte(150 + i%requesters)})
			req := arpFrame(bcast, mac, 1, mac, from, [6]byte{}, ip)
			sent := time.Now()
			if _, err := c.WriteTo(req, &packet.Addr{HardwareAddr: bcast[:]}); err != nil {
				t.Errorf("send ARP request: %v", err)
				return
			}
			s.sent++
			deadline := sent.Add(timeout)
			for {
				if err := c.SetReadDeadline(deadline); err != nil {
					t.Error(err)
					return
				}
				m, _, err := c.ReadFrom(buf)
				if err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Errorf("read ARP reply: %v", err)
						return
					}
					break // unanswered
				}
				if m >= 42 && [6]byte(buf[32:38]) == mac && netip.AddrFrom4([4]byte(buf[38:42])) == from {
					s.answered++
					s.latencies = append(s.latencies, time.Since(sent))
					break
				}
			}
			time.Sleep(pace(i)) // the client's request rate, not a wait for a condition
		}
	})
	return s
}

// addSources puts n extra addresses (fd77::c:1…) on the client's bridge, one per IPv6 requester.
func addSources(t *testing.T, l *lan, n int) []netip.Addr {
	t.Helper()
	br, err := l.client.nl.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for i := 1; i <= n; i++ {
		a := netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x77, 13: 0x0c, 15: byte(i)})
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
		if err := l.client.nl.AddrAdd(br, addr); err != nil {
			t.Fatalf("add %s: %v", a, err)
		}
		out = append(out, a)
	}
	return out
}

// ndpProbe sends n neighbour solicitations for ip with the given hop limit, from sources in turn, one at
// a time, each waiting up to timeout for the advertisement. It sends through one ICMPv6 socket that reads
// nothing and reads advertisements for ip from a packet socket with its own filter: an ICMPv6 socket would
// also receive every advertisement the attacker multicasts to all nodes, and drop ours in the crowd.
func ndpProbe(t *testing.T, l *lan, ip netip.Addr, n int, sources []netip.Addr, hopLimit int, timeout time.Duration) probeStats {
	t.Helper()
	var s probeStats
	l.client.do(t, func() {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			t.Error(err)
			return
		}
		out, _, err := ndp.Listen(ifi, ndp.Unspecified)
		if err != nil {
			t.Error(err)
			return
		}
		defer out.Close()
		var none ipv6.ICMPFilter
		none.SetAll(true)
		if err := out.SetICMPFilter(&none); err != nil {
			t.Error(err)
			return
		}
		t16 := ip.As16()
		word := func(i int) uint32 { return binary.BigEndian.Uint32(t16[4*i:]) }
		const drop = 15
		f, err := bpf.Assemble([]bpf.Instruction{
			bpf.LoadAbsolute{Off: 12, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6, SkipFalse: drop - 1 - 1},
			bpf.LoadAbsolute{Off: 20, Size: 1}, // next header: ICMPv6
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 58, SkipFalse: drop - 3 - 1},
			bpf.LoadAbsolute{Off: 54, Size: 1}, // ICMPv6 type: neighbour advertisement
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 136, SkipFalse: drop - 5 - 1},
			bpf.LoadAbsolute{Off: 62, Size: 4}, // target address
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: word(0), SkipFalse: drop - 7 - 1},
			bpf.LoadAbsolute{Off: 66, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: word(1), SkipFalse: drop - 9 - 1},
			bpf.LoadAbsolute{Off: 70, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: word(2), SkipFalse: drop - 11 - 1},
			bpf.LoadAbsolute{Off: 74, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: word(3), SkipFalse: drop - 13 - 1},
			bpf.RetConstant{Val: 256},
			bpf.RetConstant{Val: 0},
		})
		if err != nil {
			t.Error(err)
			return
		}
		in, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: f})
		if err != nil {
			t.Error(err)
			return
		}
		defer in.Close()
		group, err := ndp.SolicitedNodeMulticast(ip)
		if err != nil {
			t.Error(err)
			return
		}
		buf := make([]byte, 256)
		for i := range n {
			src := sources[i%len(sources)]
			ns := &ndp.NeighborSolicitation{TargetAddress: ip, Options: []ndp.Option{
				&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
			cm := &ipv6.ControlMessage{HopLimit: hopLimit, Src: src.AsSlice(), IfIndex: ifi.Index}
			sent := time.Now()
			if err := out.WriteTo(ns, cm, group); err != nil {
				t.Errorf("send NS: %v", err)
				return
			}
			s.sent++
			for {
				if err := in.SetReadDeadline(sent.Add(timeout)); err != nil {
					t.Error(err)
					return
				}
				m, _, err := in.ReadFrom(buf)
				if err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Errorf("read NA: %v", err)
						return
					}
					break
				}
				const solicited = 0x40
				if m >= 78 && netip.AddrFrom16([16]byte(buf[38:54])) == src && buf[58]&solicited != 0 {
					s.answered++
					s.latencies = append(s.latencies, time.Since(sent))
					break
				}
			}
			time.Sleep(pace(i)) // the client's request rate, not a wait for a condition
		}
	})
	return s
}

// requireFloodTests skips the flood tests in -short runs: they take a few seconds and two busy cores.
func requireFloodTests(t *testing.T) {
	t.Helper()
	requireNetns(t)
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	if os.Getenv(floodHelperEnv) != "" {
		t.Skip("inside the attacker process")
	}
}

func reportFlood(t *testing.T, what string, s probeStats, rep floodReport, cpu, wall time.Duration) {
	t.Helper()
	t.Logf("%s: %s; attacker sent %d malformed + %d foreign frames in %v (%.0f frames/s, %d send errors, attacker CPU %v); "+
		"responder process CPU %v over %v = %.1f %% of one core",
		what, s, rep.Malformed, rep.Foreign, rep.Elapsed.Round(time.Millisecond), rep.rate(), rep.Errors,
		rep.CPU.Round(time.Millisecond), cpu.Round(time.Millisecond), wall.Round(time.Millisecond),
		100*cpu.Seconds()/wall.Seconds())
}

// checkFlood fails a run whose flood was too weak to mean anything (under half the target's rate: a
// machine too busy to test on), notes one below 90 % of it, and fails one that did not last while the
// client was asking.
func checkFlood(t *testing.T, rep floodReport, probe time.Duration) {
	t.Helper()
	switch r := rep.rate(); {
	case r < 0.5*2*floodRate:
		t.Errorf("the attacker reached only %.0f of %d frames/s: the machine is too busy for this run to mean anything",
			r, 2*floodRate)
	case r < 0.9*2*floodRate:
		t.Logf("NOTE: the attacker reached only %.0f of %d frames/s (a busy machine): these figures are not the target's",
			r, 2*floodRate)
	}
	if rep.Elapsed < probe {
		t.Errorf("the flood lasted %v, less than the client's %v", rep.Elapsed, probe)
	}
}

// TestARPResponderUnderFlood is issue 8's target for IPv4: a client's ARP requests for the VIP are answered
// while an attacker on the same segment floods malformed and foreign ARP. With the kernel filter the flood
// never reaches the process; without it ("userspace only") DecideARP must drop every frame and the
// responder must keep answering all the same.
func TestARPResponderUnderFlood(t *testing.T) {
	requireFloodTests(t)
	for _, tc := range []struct {
		name   string
		opts   []vip.KernelOption
		maxCPU float64
	}{
		{"kernel filter", nil, maxResponderCPU},
		{"userspace only", []vip.KernelOption{vip.WithoutARPFilter()}, maxUnfilteredCPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, node, attacker := floodLAN(t)
			r := startResponder(t, node, nsVIP4, tc.opts...)
			ip := nsVIP4.Addr()
			// Answer opens its socket in its own goroutine: wait until it answers, then check it answers all.
			itest.WaitFor(t, 5*time.Second, "the responder answers ARP", func() bool {
				return arpProbe(t, l, ip, 1, 1, 100*time.Millisecond).answered == 1
			})
			if s := arpProbe(t, l, ip, 5, 5, time.Second); s.answered != s.sent {
				t.Fatalf("before the flood: %s", s)
			}

			stop := startFlood(t, attacker, floodSpec{Iface: "ax0", Mode: "arp", VIP: ip, Rate: floodRate,
				Duration: floodLimit})
			cpu0, start := processCPU(t), time.Now()
			s := arpProbe(t, l, ip, probeRequests, probeRequesters, probeTimeout)
			cpu, wall := processCPU(t)-cpu0, time.Since(start)
			rep := stop()
			reportFlood(t, "ARP", s, rep, cpu, wall)

			r.running(t)
			if s.share() < minAnswered {
				t.Errorf("%s under the flood, want at least %.0f %%", s, 100*minAnswered)
			}
			if share := cpu.Seconds() / wall.Seconds(); share > tc.maxCPU {
				t.Errorf("the responder's process used %.0f %% of a core during the flood, bound %.0f %%", 100*share, 100*tc.maxCPU)
			}
			checkFlood(t, rep, wall)
			if n := r.counter(t, "vipd_arp_responder_restarts_total", "arp"); n != 0 {
				t.Errorf("%v socket restarts during the flood, want 0", n)
			}
			malformed := r.counter(t, "vipd_arp_frames_total", "malformed")
			conflicts := r.counter(t, "vipd_arp_frames_total", "conflict")
			if tc.opts == nil && malformed != 0 {
				t.Errorf("%v malformed frames reached the process through the kernel filter", malformed)
			}
			if tc.opts != nil && malformed < float64(rep.Malformed)/2 {
				t.Errorf("only %v of %d malformed frames counted without the kernel filter", malformed, rep.Malformed)
			}
			if conflicts == 0 {
				t.Error("the announcements of our VIP by other MACs did not reach the process")
			}
			// Four MACs announced our VIP, thousands of times: at most one line per MAC in this minute.
			if n := r.log.CountLinesSince(0, "another host claims our VIP", "mac=02:ba:d0:00:00:0"); n < 1 || n > 4 {
				t.Errorf("%d conflict warnings, want 1 to 4 (one per announcing MAC and minute)", n)
			}
			t.Logf("vipd_arp_frames_total: answered %v, conflict %v, malformed %v, not_our_vip %v, not_request %v, wrong_destination %v, rate_limited %v",
				r.counter(t, "vipd_arp_frames_total", "answered"), conflicts, malformed,
				r.counter(t, "vipd_arp_frames_total", "not_our_vip"), r.counter(t, "vipd_arp_frames_total", "not_request"),
				r.counter(t, "vipd_arp_frames_total", "wrong_destination"), r.counter(t, "vipd_arp_frames_total", "rate_limited"))
		})
	}
}

// TestNDPResponderUnderFlood is the same for IPv6: solicitations with hop limit 255 are answered under a
// flood of malformed and foreign ICMPv6, solicitations with hop limit 64 never are.
func TestNDPResponderUnderFlood(t *testing.T) {
	requireFloodTests(t)
	l, node, attacker := floodLAN(t)
	r := startResponder(t, node, nsVIP6)
	ip := nsVIP6.Addr()
	sources := addSources(t, l, probeRequesters)
	itest.WaitFor(t, 5*time.Second, "the responder answers NDP", func() bool {
		return ndpProbe(t, l, ip, 1, sources, 255, 100*time.Millisecond).answered == 1
	})
	if s := ndpProbe(t, l, ip, 5, sources, 255, time.Second); s.answered != s.sent {
		t.Fatalf("before the flood: %s", s)
	}

	stop := startFlood(t, attacker, floodSpec{Iface: "ax0", Mode: "ndp", VIP: ip, Rate: floodRate, Duration: floodLimit})
	cpu0, start := processCPU(t), time.Now()
	s := ndpProbe(t, l, ip, probeRequests, sources, 255, probeTimeout)
	cpu, wall := processCPU(t)-cpu0, time.Since(start)
	badHop0 := r.counter(t, "vipd_ndp_messages_total", "bad_hop_limit")
	off := ndpProbe(t, l, ip, 20, sources, 64, 100*time.Millisecond)
	badHop := r.counter(t, "vipd_ndp_messages_total", "bad_hop_limit") - badHop0
	rep := stop()
	reportFlood(t, "NDP", s, rep, cpu, wall)

	r.running(t)
	if s.share() < minAnswered {
		t.Errorf("%s under the flood, want at least %.0f %%", s, 100*minAnswered)
	}
	if off.answered != 0 {
		t.Errorf("solicitations with hop limit 64: %s, want none answered", off)
	}
	if badHop < float64(off.sent) {
		t.Errorf("bad_hop_limit grew by %v while the client sent %d solicitations with hop limit 64", badHop, off.sent)
	}
	if share := cpu.Seconds() / wall.Seconds(); share > maxResponderCPU {
		t.Errorf("the responder's process used %.0f %% of a core during the flood, bound %.0f %%", 100*share, 100*maxResponderCPU)
	}
	checkFlood(t, rep, wall)
	if n := r.counter(t, "vipd_arp_responder_restarts_total", "ndp"); n != 0 {
		t.Errorf("%v socket restarts during the flood, want 0", n)
	}
	if n := r.counter(t, "vipd_ndp_messages_total", "malformed"); n == 0 {
		t.Error("no malformed solicitation reached the process: the flood did not test DecideNDP")
	}
	t.Logf("vipd_ndp_messages_total: answered %v, malformed %v, bad_hop_limit %v, not_our_vip %v, bad_sender %v",
		r.counter(t, "vipd_ndp_messages_total", "answered"), r.counter(t, "vipd_ndp_messages_total", "malformed"),
		r.counter(t, "vipd_ndp_messages_total", "bad_hop_limit"), r.counter(t, "vipd_ndp_messages_total", "not_our_vip"),
		r.counter(t, "vipd_ndp_messages_total", "bad_sender"))
}

// neighbourState returns the client's neighbour-cache state for ip on br0 (0 when absent).
func (l *lan) neighbourState(t *testing.T, ip netip.Addr) int {
	t.Helper()
	br, err := l.client.nl.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := l.client.nl.NeighList(br.Attrs().Index, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a == ip {
			return n.State
		}
	}
	return 0
}

// TestNDPAnswersReachabilityProbes: a neighbour confirms a cached entry with unicast solicitations sent to
// the VIP itself (RFC 4861 §7.3.3, the PROBE state). Those must be answered like multicast ones, or every
// client's entry for the VIP fails once per reachable time and traffic stalls until it is resolved again.
func TestNDPAnswersReachabilityProbes(t *testing.T) {
	l := newLAN(t, 1)
	node := l.nodes[0]
	r := startResponder(t, node, nsVIP6)
	ip := nsVIP6.Addr()
	mac := r.k.HardwareAddr().String()
	itest.WaitFor(t, 3*time.Second, "client resolves the VIP", func() bool {
		l.poke(t, ip)
		return l.neighbour(t, ip) == mac
	})
	// Probe at once when the entry is used, not after the default 5 s.
	l.client.sysctl(t, "net.ipv6.neigh.br0.delay_first_probe_time=0")
	sh(t, "ip", "-n", l.client.name, "-6", "neigh", "change", ip.String(), "dev", "br0", "lladdr", mac, "nud", "stale")
	probes := r.counter(t, "vipd_ndp_messages_total", "answered")
	l.poke(t, ip) // STALE and used: DELAY, then PROBE with unicast solicitations to the VIP
	itest.WaitFor(t, 5*time.Second, "the client's entry confirmed by a unicast probe", func() bool {
		return l.neighbourState(t, ip) == netlink.NUD_REACHABLE
	})
	if got := r.counter(t, "vipd_ndp_messages_total", "answered"); got <= probes {
		t.Fatalf("entry reachable but no solicitation answered (%v before, %v after): the test proved nothing", probes, got)
	}
}

// TestResponderReopensFailedSocket: a socket error (here ENETDOWN, when the interface goes down) reopens
// the socket instead of ending the responder, and answers resume once the link is back.
func TestResponderReopensFailedSocket(t *testing.T) {
	l := newLAN(t, 1)
	node := l.nodes[0]
	r := startResponder(t, node, nsVIP4)
	ip := nsVIP4.Addr()
	mac := r.k.HardwareAddr().String()
	if got := resolve(t, l, ip, 2*time.Second); got != mac {
		t.Fatalf("before: ARP for the VIP answered by %q, want %s", got, mac)
	}
	sh(t, "ip", "-n", node.name, "link", "set", node.ifname, "down")
	itest.WaitFor(t, 5*time.Second, "the ARP socket reopened", func() bool {
		return r.counter(t, "vipd_arp_responder_restarts_total", "arp") >= 1
	})
	sh(t, "ip", "-n", node.name, "link", "set", node.ifname, "up")
	if got := resolve(t, l, ip, 3*time.Second); got != mac {
		t.Fatalf("after the link came back: ARP for the VIP answered by %q, want %s", got, mac)
	}
	r.running(t)
	if !r.log.ContainsLine("ARP responder socket failed; reopening it", "network is down") {
		t.Error("no warning naming the socket error")
	}
}

// TestResponderRateLimitsOneRequester: one MAC asking more often than the per-requester limit gets at most
// that many replies a second, so the responder cannot be made to flood a victim whose MAC an attacker puts
// in its requests. The limit is lowered to 10/s here so that 60 requests reach it (in production it is 100/s,
// which a 10 ms monitoring probe must not hit).
func TestResponderRateLimitsOneRequester(t *testing.T) {
	l := newLAN(t, 1)
	r := startResponder(t, l.nodes[0], nsVIP4, vip.WithReplyLimits(10, 1000))
	ip := nsVIP4.Addr()
	itest.WaitFor(t, 5*time.Second, "the responder answers ARP", func() bool {
		return arpProbe(t, l, ip, 1, 1, 100*time.Millisecond).answered == 1
	})
	// 60 requests from one MAC, 5–10 ms apart: about 0.45 s, so at most two windows of 10 replies.
	start := time.Now()
	s := arpProbe(t, l, ip, 60, 1, 20*time.Millisecond)
	windows := int(time.Since(start)/time.Second) + 2
	t.Logf("one requester: %s in %v", s, time.Since(start).Round(time.Millisecond))
	if s.answered == 0 || s.answered > 10*windows {
		t.Errorf("one requester got %d replies in %d one-second windows, want 1 to %d", s.answered, windows, 10*windows)
	}
	if n := r.counter(t, "vipd_arp_frames_total", "rate_limited"); n < float64(s.sent-10*windows) {
		t.Errorf("rate_limited = %v, want at least %d", n, s.sent-10*windows)
	}
	if !r.log.ContainsLine("rate-limiting ARP replies", "requester=02:77:00:00:00:00") {
		t.Error("no warning naming the rate-limited requester")
	}
}
