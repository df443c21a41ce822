//go:build linux

package vip

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	itest "github.com/vipd/vipd/internal/testutil"
)

func TestRestartBackoff(t *testing.T) {
	var b restartBackoff
	var got []time.Duration
	for range 9 {
		got = append(got, b.failed(time.Millisecond))
	}
	want := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond,
		80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond, 640 * time.Millisecond, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	if d := b.failed(0); d != time.Second {
		t.Fatalf("after the cap: %v, want 1s", d)
	}
	if d := b.failed(restartResetAfter); d != 0 {
		t.Fatalf("after a socket served %v: %v, want an immediate restart", restartResetAfter, d)
	}
}

// fakeFrames records the frames the ARP socket sends.
type fakeFrames struct {
	sent []net.HardwareAddr
	err  error
}

func (f *fakeFrames) WriteTo(b []byte, addr net.Addr) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.sent = append(f.sent, addr.(*packet.Addr).HardwareAddr)
	return len(b), nil
}

type fakeAdverts struct{ sent []netip.Addr }

func (f *fakeAdverts) send(m *ndp.NeighborAdvertisement, dst netip.Addr) error {
	if !m.Override || m.TargetAddress != testVIP6 {
		return errors.New("not an overriding advertisement for the VIP")
	}
	f.sent = append(f.sent, dst)
	return nil
}

func testKernel(t *testing.T) (*LinuxKernel, *itest.LogSink, *Metrics) {
	sink := itest.NewLogSink(t)
	m := NewMetrics(prometheus.NewRegistry())
	return &LinuxKernel{ifi: &net.Interface{Name: "test0"}, mac: testSelf, log: sink.Logger(slog.LevelInfo), metrics: m}, sink, m
}

// TestARPSocketHandle drives the socket loop's handling (fence, rate limits, warnings, metrics) without
// a socket: everything but the read and the write.
func TestARPSocketHandle(t *testing.T) {
	k, sink, m := testKernel(t)
	w := &fakeFrames{}
	var open atomic.Bool
	s := &arpSocket{k: k, w: w, vips: testVIPs4, allow: open.Load,
		limit: newReplyLimiter[[6]byte](replyPerRequester, replyGlobal, replyWindow),
		warns: newWarnLimiter(warnEvery, maxWarnKeys)}
	now := time.Unix(1000, 0)
	handle := func(frame []byte) Verdict {
		v := s.handle(frame, now)
		k.metrics.arpFrame(v)
		return v
	}

	if v := handle(arpFields{}.frame()); v != DropFenced || len(w.sent) != 0 {
		t.Fatalf("gate closed: %s, %d frames sent; want fenced, none", v, len(w.sent))
	}
	open.Store(true)
	if v := handle(arpFields{}.frame()); v != Reply || len(w.sent) != 1 || [6]byte(w.sent[0]) != testPeer {
		t.Fatalf("gate open: %s, sent to %v; want answered to %s", v, w.sent, macString(testPeer))
	}
	for range 2 * replyPerRequester {
		handle(arpFields{}.frame())
	}
	if len(w.sent) != replyPerRequester {
		t.Fatalf("%d replies to one MAC in one second, want %d", len(w.sent), replyPerRequester)
	}
	if n := sink.CountLinesSince(0, "rate-limiting ARP replies", "requester="+macString(testPeer)); n != 1 {
		t.Fatalf("%d rate-limit warnings, want 1", n)
	}

	// A flood of conflicting announcements from one MAC: one warning, MAC as text.
	for range 1000 {
		if v := handle(arpFields{spa: testVIP4}.frame()); v != DropConflict {
			t.Fatalf("gratuitous ARP for the VIP: %s", v)
		}
	}
	if n := sink.CountLinesSince(0, "another host claims our VIP", "mac="+macString(testPeer), "vip=10.0.0.50"); n != 1 {
		t.Fatalf("%d conflict warnings for 1,000 announcements, want 1", n)
	}
	now = now.Add(warnEvery)
	handle(arpFields{spa: testVIP4}.frame())
	if n := sink.CountLinesSince(0, "another host claims our VIP", "suppressed=999"); n != 1 {
		t.Fatal("a minute later: want one more warning carrying suppressed=999")
	}

	// Malformed frames: counted, never answered, never logged.
	mark := sink.Mark()
	for range 200 {
		if v := handle(hlen255Frame()); v != DropMalformed {
			t.Fatalf("hardware length 255: %s", v)
		}
	}
	if sink.Mark() != mark {
		t.Fatal("malformed frames were logged")
	}

	w.err = errors.New("no buffer space")
	if v := handle(arpFields{sha: mac(2, 0, 0, 0, 0, 7)}.frame()); v != DropSendFailed {
		t.Fatalf("failing write: %s, want send_failed", v)
	}
	if !sink.ContainsLine("send ARP reply", "to=02:00:00:00:00:07", "no buffer space") {
		t.Fatal("no warning for a failed send")
	}

	for v, want := range map[Verdict]float64{Reply: replyPerRequester, DropFenced: 1,
		DropRateLimited: replyPerRequester + 1, DropConflict: 1001, DropMalformed: 200, DropSendFailed: 1} {
		if got := counterValue(t, m.arpFrames[v]); got != want {
			t.Errorf("vipd_arp_frames_total{result=%q} = %v, want %v", v, got, want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestNDPSocketHandle(t *testing.T) {
	k, _, _ := testKernel(t)
	w := &fakeAdverts{}
	s := &ndpSocket{k: k, w: w, vips: testVIPs6, allow: func() bool { return true },
		limit: newReplyLimiter[netip.Addr](replyPerRequester, replyGlobal, replyWindow),
		warns: newWarnLimiter(warnEvery, maxWarnKeys)}
	now := time.Unix(1000, 0)
	valid := nsMsg(testVIP6, sllaOpt(testPeer))
	zoned := testHost6.WithZone("test0")
	tests := []struct {
		name    string
		msg     []byte
		src     netip.Addr
		hop     int
		want    Verdict
		wantDst netip.Addr
	}{
		{"solicitation", valid, zoned, 255, Reply, zoned},
		{"hop limit 64", valid, zoned, 64, DropBadHopLimit, netip.Addr{}},
		{"DAD: to all nodes", nsMsg(testVIP6), netip.IPv6Unspecified(), 255, Reply, allNodes},
		{"DAD from a socket (zoned): to all nodes", nsMsg(testVIP6), netip.IPv6Unspecified().WithZone("test0"), 255, Reply, allNodes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w.sent = nil
			if v := s.handle(tc.msg, tc.src, tc.hop, now); v != tc.want {
				t.Fatalf("verdict %s, want %s", v, tc.want)
			}
			if tc.wantDst.IsValid() != (len(w.sent) == 1) || (len(w.sent) == 1 && w.sent[0] != tc.wantDst) {
				t.Fatalf("sent to %v, want %v", w.sent, tc.wantDst)
			}
		})
	}
	// The limit is per source address, zone or not.
	w.sent = nil
	for range 3 * replyPerRequester {
		s.handle(valid, testHost6, 255, now)
	}
	if len(w.sent) != replyPerRequester-1 { // one already sent above to the same address
		t.Fatalf("%d advertisements to one source in a second, want %d", len(w.sent), replyPerRequester-1)
	}
}
