//go:build linux

package vip_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// The attacker of the flood tests runs as a separate process — this test binary re-executed inside the
// attacker's namespace — so that the CPU the responder's process uses is measured apart from the sender's.

const floodHelperEnv = "VIPD_FLOOD_HELPER"

// floodSpec is what the attacker sends, passed to it as JSON in floodHelperEnv.
type floodSpec struct {
	Iface    string        // the attacker's interface
	Mode     string        // "arp" or "ndp"
	VIP      netip.Addr    // the VIP under attack
	Rate     int           // frames per second of each kind: malformed, and foreign
	Duration time.Duration // the most it floods; the test stops it earlier with SIGUSR1
}

// floodReport is what the attacker sent.
type floodReport struct {
	Malformed, Foreign, Errors int
	Elapsed                    time.Duration
	CPU                        time.Duration // the attacker process's user+system time (set by the parent)
}

func (r floodReport) rate() float64 {
	return float64(r.Malformed+r.Foreign) / r.Elapsed.Seconds()
}

// TestFloodHelperProcess is the attacker process; run alone it skips.
func TestFloodHelperProcess(t *testing.T) {
	raw := os.Getenv(floodHelperEnv)
	if raw == "" {
		t.Skip("the attacker process of the flood tests, started by them")
	}
	var spec floodSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("flood spec: %v", err)
	}
	ifi, err := net.InterfaceByName(spec.Iface)
	if err != nil {
		t.Fatal(err)
	}
	c, err := packet.Listen(ifi, packet.Raw, 0, nil) // protocol 0: sends, receives nothing
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	malformed, foreign := floodFrames(spec)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR1)
	defer signal.Stop(stop)
	var rep floodReport
	start := time.Now() // before READY: the flood then surely covers everything the parent times after it
	fmt.Println("FLOOD-READY")

	dst := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	send := func(f []byte) {
		if _, err := c.WriteTo(f, dst); err != nil {
			rep.Errors++
		}
	}
	// Every millisecond, a thousandth of the rate of each kind. A sender that falls behind (a busy machine)
	// catches up by at most 100 ms, never in one long burst, so the rate reported is the rate it could keep
	// and a stop signal is seen within about 100 ms.
	batch := max(1, spec.Rate/1000)
	limit := spec.Rate * int(spec.Duration/time.Second+1) // bounded in count as well as in time
	next := start
loop:
	for time.Since(start) < spec.Duration && rep.Malformed < limit {
		select {
		case <-stop:
			break loop
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
			time.Sleep(d) // pacing of the load generator, not a wait for a condition
		case d < -100*time.Millisecond:
			next = time.Now()
		}
	}
	rep.Elapsed = time.Since(start)
	b, _ := json.Marshal(rep)
	fmt.Printf("FLOOD-REPORT %s\n", b)
}

// startFlood starts the attacker process in ns and returns once it is sending; stop ends the flood and
// returns what was sent.
func startFlood(t *testing.T, ns *testNS, spec floodSpec) (stop func() floodReport) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.name, exe, "-test.run=^TestFloodHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), floodHelperEnv+"="+string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the attacker: %v", err)
	}
	ready, reports := make(chan struct{}), make(chan floodReport, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	var output strings.Builder
	go func() { // owned by this function: ends at the process's EOF, which stop or Cleanup brings
		defer wg.Done()
		defer close(reports)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			output.WriteString(line + "\n")
			switch {
			case line == "FLOOD-READY":
				close(ready)
			case strings.HasPrefix(line, "FLOOD-REPORT "):
				var r floodReport
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "FLOOD-REPORT ")), &r) == nil {
					reports <- r
				}
			}
		}
	}()
	waited := false
	wait := func() error {
		wg.Wait()
		waited = true
		return cmd.Wait()
	}
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = wait()
		}
	})
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("the attacker did not start: %s", stderr.String())
	}
	return func() floodReport {
		_ = cmd.Process.Signal(syscall.SIGUSR1)
		rep, ok := <-reports
		if err := wait(); err != nil || !ok {
			t.Fatalf("attacker process: %v (report received: %v)\nstdout: %s\nstderr: %s", err, ok, output.String(), stderr.String())
		}
		rep.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return rep
	}
}

// floodFrames builds the attacker's frames: malformed ones and well-formed foreign ones, from a few
// hundred source MACs (so the bridge's forwarding table stays small).
func floodFrames(spec floodSpec) (malformed, foreign [][]byte) {
	bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	srcMAC := func(kind byte, k int) [6]byte { return [6]byte{0x02, kind, 0, 0, byte(k >> 8), byte(k)} }
	other := func(k int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, byte(200 + k%50)}) }
	if spec.Mode == "arp" {
		for k := range 300 {
			m := srcMAC(0x66, k)
			var f []byte
			switch k % 6 {
			case 0: // the frame of the report: hardware length 255
				f = append(append(append([]byte{}, bcast[:]...), m[:]...), 0x08, 0x06, 0, 1, 0x08, 0, 0xff, 4, 0, 1)
				f = append(f, make([]byte, 46)...)
			case 1: // protocol length 16
				f = arpFrame(bcast, m, 1, m, other(k), [6]byte{}, spec.VIP)
				f[19] = 16
			case 2: // hardware type 6
				f = arpFrame(bcast, m, 1, m, other(k), [6]byte{}, spec.VIP)
				f[15] = 6
			case 3: // cut in the sender address
				f = arpFrame(bcast, m, 1, m, other(k), [6]byte{}, spec.VIP)[:30]
			case 4: // cut before the end of the target IP
				f = arpFrame(bcast, m, 1, m, other(k), [6]byte{}, spec.VIP)[:40]
			case 5: // IPv6 as protocol
				f = arpFrame(bcast, m, 1, m, other(k), [6]byte{}, spec.VIP)
				f[16], f[17] = 0x86, 0xdd
			}
			malformed = append(malformed, f)
		}
		for k := range 400 {
			m := srcMAC(0x65, k)
			var f []byte
			switch r := k % 100; {
			case r < 40: // requests for other addresses
				f = arpFrame(bcast, m, 1, m, other(k), [6]byte{}, other(k+7))
			case r < 70: // replies between other hosts, unicast
				peer := srcMAC(0x64, k)
				f = arpFrame(peer, m, 2, m, other(k), peer, other(k+3))
			case r < 99: // gratuitous ARPs for other addresses
				f = arpFrame(bcast, m, 1, m, other(k), [6]byte{}, other(k))
			default: // 1 %: another MAC announces our VIP (one of four MACs): a conflict to report
				bad := [6]byte{0x02, 0xba, 0xd0, 0, 0, byte(k / 100)}
				f = arpFrame(bcast, bad, 1, bad, spec.VIP, [6]byte{}, spec.VIP)
			}
			foreign = append(foreign, f)
		}
		return malformed, foreign
	}
	// NDP: everything goes to the VIP's solicited-node group, which our socket joined.
	group := solicitedNode(spec.VIP)
	gmac := [6]byte{0x33, 0x33, 0xff, group.As16()[13], group.As16()[14], group.As16()[15]}
	host := func(k int) netip.Addr {
		return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x77, 12: 0xde, 13: 0xad, 14: byte(k >> 8), 15: byte(k)})
	}
	vip16 := spec.VIP.As16()
	for k := range 300 {
		m := srcMAC(0x66, k)
		src, hop := host(k), uint8(255)
		var msg []byte
		switch k % 6 {
		case 0: // option of length 0
			msg = nsBytes(spec.VIP, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		case 1: // 20 bytes
			msg = nsBytes(spec.VIP, nil)[:20]
		case 2: // code 1
			msg = nsBytes(spec.VIP, slla(m))
			msg[1] = 1
		case 3: // valid, but hop limit 64: routed from off-link
			msg, hop = nsBytes(spec.VIP, slla(m)), 64
		case 4: // multicast target
			msg = nsBytes(netip.MustParseAddr("ff02::1"), slla(m))
		case 5: // duplicate address detection carrying a link-layer address
			msg, src = nsBytes(spec.VIP, slla(m)), netip.IPv6Unspecified()
		}
		malformed = append(malformed, ipv6Frame(gmac, m, src, group, hop, msg))
	}
	for k := range 300 {
		m := srcMAC(0x65, k)
		var f []byte
		if k%2 == 0 { // solicitations for other addresses in the same solicited-node group
			t := vip16
			t[2], t[3] = 0x10, byte(k)
			f = ipv6Frame(gmac, m, host(k), group, 255, nsBytes(netip.AddrFrom16(t), slla(m)))
		} else { // unsolicited advertisements for other addresses, to all nodes (the ICMPv6 filter drops them)
			na := nsBytes(host(k+1), append([]byte{2, 1}, m[:]...))
			na[0], na[4] = 136, 0x20
			f = ipv6Frame([6]byte{0x33, 0x33, 0, 0, 0, 1}, m, host(k), netip.MustParseAddr("ff02::1"), 255, na)
		}
		foreign = append(foreign, f)
	}
	return malformed, foreign
}

// arpFrame builds an Ethernet/IPv4 ARP frame.
func arpFrame(dst, src [6]byte, op uint16, sha [6]byte, spa netip.Addr, tha [6]byte, tpa netip.Addr) []byte {
	b := append(append([]byte{}, dst[:]...), src[:]...)
	b = append(b, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4)
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(b, sha[:]...)
	b = append(b, spa.AsSlice()...)
	b = append(b, tha[:]...)
	return append(b, tpa.AsSlice()...)
}

// nsBytes is a neighbour solicitation (checksum left zero) for target with raw options.
func nsBytes(target netip.Addr, opts []byte) []byte {
	b := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, target.AsSlice()...)
	return append(b, opts...)
}

func slla(m [6]byte) []byte { return append([]byte{1, 1}, m[:]...) }

func solicitedNode(ip netip.Addr) netip.Addr {
	a := ip.As16()
	return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
}

// ipv6Frame wraps an ICMPv6 message in IPv6 and Ethernet, with a correct checksum (the kernel drops a
// wrong one before any socket sees it, which would test nothing of ours).
func ipv6Frame(dst, src [6]byte, srcIP, dstIP netip.Addr, hop uint8, msg []byte) []byte {
	msg = append([]byte{}, msg...)
	if len(msg) >= 4 {
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint16(msg[2:], icmpv6Checksum(srcIP, dstIP, msg))
	}
	b := append(append([]byte{}, dst[:]...), src[:]...)
	b = append(b, 0x86, 0xdd, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, 58, hop)
	b = append(b, srcIP.AsSlice()...)
	b = append(b, dstIP.AsSlice()...)
	return append(b, msg...)
}

func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	add(binary.BigEndian.AppendUint32(nil, uint32(len(msg))))
	add([]byte{0, 0, 0, 58})
	add(msg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// processCPU is the user+system time this process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// counterValue reads one labelled counter from reg (0 when absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
