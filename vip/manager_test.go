package vip_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip"
	"github.com/vipd/vipd/vip/viptest"
)

var (
	vip4 = netip.MustParsePrefix("10.0.0.50/24")
	ip4  = vip4.Addr()
)

// Timings of the unit tests. Most run in a synctest bubble, where time is virtual and every figure below is
// exact; the hook tests run external processes and so keep the real clock.
const (
	testHeartbeat = 30 * time.Millisecond // AnswerWindow 30 ms, VerifyInterval 10 ms
	testVerify    = testHeartbeat / 3
	testRefresh   = 20 * time.Millisecond
	testBurst     = 5 * time.Millisecond
	testBursts    = 3
)

type rig struct {
	k      *viptest.FakeKernel
	l      *viptest.FakeLeadership
	h      *viptest.FakeHealth
	events *viptest.EventLog
	reg    *prometheus.Registry
	m      *vip.Manager
	cancel context.CancelFunc
	done   chan error
}

// newRig builds a Manager over fakes with short test timings; mutate adjusts the config.
func newRig(t *testing.T, mutate func(*vip.Config)) *rig {
	t.Helper()
	r := &rig{k: viptest.NewFakeKernel(), l: viptest.NewFakeLeadership(), h: viptest.NewFakeHealth(),
		events: &viptest.EventLog{}, reg: prometheus.NewRegistry()}
	r.k.SetEventLog(r.events)
	r.l.SetEventLog(r.events)
	cfg := vip.Config{
		VIPs: []netip.Prefix{vip4}, RaftHeartbeat: testHeartbeat, Announce: true, GARPRefresh: testRefresh,
		BurstCount: testBursts, BurstInterval: testBurst, HookTimeout: 2 * time.Second,
		Logger: testutil.Logger(t), Metrics: vip.NewMetrics(r.reg),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := vip.NewManager(cfg, r.l, r.h, r.k)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	r.m = m
	return r
}

// start runs the Manager until the test ends (or stop is called).
func (r *rig) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.m.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
}

func (r *rig) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
		r.done = closedErrChan()
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func closedErrChan() chan error {
	c := make(chan error, 1)
	c <- nil
	return c
}

func (r *rig) holding() bool { return r.m.Held() && r.k.Has(ip4) && r.k.Answering() }

func (r *rig) released() bool { return !r.m.Held() && !r.k.Has(ip4) && !r.k.Answering() }

// lead makes the node leader and waits until the Manager has settled: in a bubble nothing else moves, so the
// VIP is held on return (the fakes answer at once).
func (r *rig) lead(t *testing.T) {
	t.Helper()
	r.l.SetLeader(true)
	synctest.Wait()
	if !r.holding() {
		t.Fatalf("VIP not held after becoming leader: %v", r.events.Events())
	}
}

// sleep advances the bubble's clock by d and lets every goroutine settle.
func sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestAcquireOnlyAfterBarrier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.start(t)
		r.lead(t)
		b, a := r.events.Index("raft:barrier", 0), r.events.Index("kernel:add "+ip4.String(), 0)
		if b < 0 || a < 0 || b > a {
			t.Fatalf("barrier at %d, add at %d: want barrier strictly before add; events %v", b, a, r.events.Events())
		}
		// The burst (testBursts announcements testBurst apart), then one per refresh.
		sleep(2 * testRefresh)
		if got, want := r.k.Announces(ip4), testBursts+2; got != want {
			t.Errorf("%d announcements after two refresh periods, want %d (burst of %d, two refreshes)", got, want, testBursts)
		}
		if got := r.metric(t, "vipd_vip_held", ""); got != 1 {
			t.Errorf("vipd_vip_held = %v, want 1", got)
		}
		if got := r.metric(t, "vipd_garp_sent_total", ""); got != testBursts+2 {
			t.Errorf("vipd_garp_sent_total = %v, want %d", got, testBursts+2)
		}
	})
}

// metric returns the value of the series name (with label value lv, if not empty) or -1.
func (r *rig) metric(t *testing.T, name, lv string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if lv != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != lv) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestBarrierFailureNeverAcquires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.l.SetBarrierError(errors.New("leadership lost while committing barrier"))
		r.start(t)
		r.l.SetLeader(true)
		sleep(3 * testVerify) // retried every VerifyInterval
		if n := r.l.Barriers(); n != 4 {
			t.Errorf("%d barriers in three retry periods, want 4", n)
		}
		if r.events.Index("kernel:add "+ip4.String(), 0) >= 0 || r.m.Held() {
			t.Fatalf("VIP acquired although every barrier failed: %v", r.events.Events())
		}
		// Once a barrier succeeds the node, still leader, takes the VIP.
		r.l.SetBarrierError(nil)
		sleep(testVerify)
		if !r.holding() {
			t.Fatal("VIP not held after a successful barrier")
		}
	})
}

// TestLeadershipTermChange: the leadership channel keeps only the newest state, so a loss and re-election
// while the loop is busy arrives as leadership in a new term, with no false in between. The Manager must
// treat it as the loss it hides — release, then a fresh barrier before holding again — and must treat the
// same term seen twice as nothing.
func TestLeadershipTermChange(t *testing.T) {
	tests := []struct {
		name        string
		change      func(*viptest.FakeLeadership)
		wantRelease bool
	}{
		{"same term observed again", func(l *viptest.FakeLeadership) { l.SetLeader(true) }, false},
		{"coalesced loss and re-election", (*viptest.FakeLeadership).Reelect, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, nil)
				r.start(t)
				r.lead(t)
				term, barriers, mark := r.l.Term(), r.l.Barriers(), len(r.events.Events())
				tc.change(r.l)
				synctest.Wait()
				ev := r.events.Events()[mark:]
				del := slices.Index(ev, "kernel:del "+ip4.String())
				if !tc.wantRelease {
					if del >= 0 || r.l.Barriers() != barriers || r.l.Term() != term {
						t.Fatalf("a duplicate observation moved the VIP: events %v, barriers %d→%d", ev, barriers, r.l.Barriers())
					}
					return
				}
				bar := slices.Index(ev, "raft:barrier")
				add := slices.Index(ev, "kernel:add "+ip4.String())
				if del < 0 || bar < del || add < bar {
					t.Fatalf("want release, then a fresh barrier, then add; got %v", ev)
				}
				if !r.holding() || r.l.Barriers() != barriers+1 {
					t.Fatalf("holding %v with %d barriers, want held again after exactly one more", r.holding(), r.l.Barriers()-barriers)
				}
				if got := r.metric(t, "vipd_vip_transitions_total", "release"); got != 1 {
					t.Errorf("release transitions = %v, want 1", got)
				}
			})
		})
	}
}

// barrierHook runs after a Barrier has committed, before it returns: what Raft did in the meantime.
type barrierHook struct {
	*viptest.FakeLeadership
	during func(n int) // n counts barriers from 1
	n      int
}

func (b *barrierHook) Barrier(ctx context.Context) error {
	err := b.FakeLeadership.Barrier(ctx)
	b.n++
	b.during(b.n)
	return err
}

// TestLeadershipChangeDuringBarrier: whatever Raft reported while the barrier ran decides. A loss means no
// VIP; leadership in a new term means the barrier may belong to the old one, so another is taken.
func TestLeadershipChangeDuringBarrier(t *testing.T) {
	tests := []struct {
		name         string
		during       func(l *viptest.FakeLeadership, n int)
		wantBarriers int
		wantHeld     bool
	}{
		{"lost", func(l *viptest.FakeLeadership, n int) {
			if n == 1 {
				l.SetLeader(false)
			}
		}, 1, false},
		{"lost and regained", func(l *viptest.FakeLeadership, n int) {
			if n == 1 {
				l.Reelect()
			}
		}, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fake := viptest.NewFakeLeadership()
				hook := &barrierHook{FakeLeadership: fake}
				hook.during = func(n int) { tc.during(fake, n) }
				k, reg := viptest.NewFakeKernel(), prometheus.NewRegistry()
				m, err := vip.NewManager(vip.Config{VIPs: []netip.Prefix{vip4}, RaftHeartbeat: testHeartbeat,
					Logger: testutil.Logger(t), Metrics: vip.NewMetrics(reg)}, hook, viptest.NewFakeHealth(), k)
				if err != nil {
					t.Fatal(err)
				}
				r := &rig{k: k, l: fake, m: m, reg: reg}
				r.start(t)
				fake.SetLeader(true)
				synctest.Wait()
				if got := fake.Barriers(); got != tc.wantBarriers || r.m.Held() != tc.wantHeld {
					t.Fatalf("%d barriers, held %v; want %d, %v", got, r.m.Held(), tc.wantBarriers, tc.wantHeld)
				}
				if tc.wantHeld && !r.holding() {
					t.Fatal("VIP not fully held")
				}
			})
		})
	}
}

func TestReleaseOnLeadershipLossBeforeHook(t *testing.T) {
	// Real clock: the hook is an external process, which a synctest bubble cannot wait for.
	dir := t.TempDir()
	marker, out := filepath.Join(dir, "held"), filepath.Join(dir, "out")
	k := &markerKernel{FakeKernel: viptest.NewFakeKernel(), marker: marker}
	l, h := viptest.NewFakeLeadership(), viptest.NewFakeHealth()
	m, err := vip.NewManager(vip.Config{
		VIPs: []netip.Prefix{vip4}, RaftHeartbeat: testHeartbeat, Announce: true, Logger: testutil.Logger(t),
		// The hook reports whether the address was still configured when it ran.
		OnRelease: vip.Hook{Shell: `if [ -e "` + marker + `" ]; then echo still-held; else echo released; fi > "` + out + `"`},
	}, l, h, k)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{k: k.FakeKernel, m: m}
	r.start(t)
	l.SetLeader(true)
	testutil.WaitFor(t, 2*time.Second, "VIP held", r.holding)
	l.SetLeader(false)
	testutil.WaitFor(t, 2*time.Second, "release hook output", func() bool { _, err := os.Stat(out); return err == nil })
	testutil.WaitFor(t, time.Second, "hook output written", func() bool {
		b, _ := os.ReadFile(out)
		return strings.HasSuffix(string(b), "\n")
	})
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != "released" {
		t.Fatalf("OnRelease hook saw %q: the VIP must be removed before the hook runs", b)
	}
	if !r.released() {
		t.Fatal("VIP still held after leadership loss")
	}
}

// markerKernel mirrors "address configured" into a file that a hook can observe.
type markerKernel struct {
	*viptest.FakeKernel
	marker string
}

func (k *markerKernel) AddAddr(p netip.Prefix) error {
	if err := os.WriteFile(k.marker, nil, 0o600); err != nil {
		return err
	}
	return k.FakeKernel.AddAddr(p)
}

func (k *markerKernel) DelAddr(p netip.Prefix) error {
	if err := os.Remove(k.marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return k.FakeKernel.DelAddr(p)
}

func TestUnhealthyLeaderHandsOff(t *testing.T) {
	peers := []vip.Peer{
		{Name: "a", Healthy: true, Priority: 1, Voter: true},
		{Name: "b", Healthy: true, Priority: 5, Voter: true},
		{Name: "c", Healthy: false, Priority: 9, Voter: true},
		{Name: "w", Healthy: true, Priority: 10, Voter: true, Witness: true},
		{Name: "n", Healthy: true, Priority: 10, Voter: false},
		{Name: "a2", Healthy: true, Priority: 5, Voter: true}, // same priority as b: name decides
	}
	tests := []struct {
		name            string
		unhealthyBefore bool // true: unhealthy when elected; false: turns unhealthy while holding
	}{
		{"elected while unhealthy", true},
		{"turns unhealthy while holding", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Our priority is above every peer's, so only health (not preemption) moves the VIP.
				r := newRig(t, func(c *vip.Config) { c.Priority = 100 })
				r.l.SetPeers(peers...)
				if tc.unhealthyBefore {
					r.h.Set(false, "0 of 3 backends healthy")
				}
				r.start(t)
				if tc.unhealthyBefore {
					r.l.SetLeader(true)
				} else {
					r.lead(t)
					r.h.Set(false, "listener down")
				}
				synctest.Wait()
				got := r.l.Transfers()
				if len(got) != 1 || got[0] != "a2" {
					t.Fatalf("transfers %q, want one to a2 (healthy voter of highest priority, then lowest name)", got)
				}
				if !r.released() {
					t.Fatal("VIP not released")
				}
				if tc.unhealthyBefore && r.events.Index("kernel:add "+ip4.String(), 0) >= 0 {
					t.Fatalf("unhealthy new leader acquired the VIP before handing off: %v", r.events.Events())
				}
				// Release first: the address is gone before the transfer is asked for.
				if !tc.unhealthyBefore {
					ev := r.events.Events()
					add := r.events.Index("kernel:add "+ip4.String(), 0)
					stop := r.events.Index("kernel:answer-stop", add)
					del := r.events.Index("kernel:del "+ip4.String(), add)
					tr := r.events.Index("raft:transfer a2", 0)
					if add < 0 || del < 0 || stop < 0 || tr < 0 || del > tr || stop > del {
						t.Fatalf("want answer-stop < del < transfer, got %v", ev)
					}
				}
			})
		})
	}
}

func TestUnhealthyWithoutHealthyPeerKeepsVIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.l.SetPeers(vip.Peer{Name: "b", Healthy: false, Voter: true}, vip.Peer{Name: "w", Healthy: true, Voter: true, Witness: true})
		r.h.Set(false, "0 of 3 backends healthy")
		r.start(t)
		r.lead(t)
		r.h.Set(false, "still unhealthy")
		sleep(3 * testRefresh)
		if n := r.k.Announces(ip4); n != testBursts+3 {
			t.Errorf("%d announcements, want %d: an unhealthy holder keeps announcing", n, testBursts+3)
		}
		if tr := r.l.Transfers(); len(tr) != 0 || !r.holding() {
			t.Fatalf("transfers %v, holding %v: want the VIP kept when no peer is healthy", tr, r.holding())
		}
		// A healthy peer appears: the next level check hands off.
		r.l.SetPeers(vip.Peer{Name: "b", Healthy: true, Voter: true})
		sleep(testRefresh)
		if !slices.Contains(r.l.Transfers(), "b") || !r.released() {
			t.Fatalf("transfers %v, released %v: want a hand-off to b at the next refresh", r.l.Transfers(), r.released())
		}
	})
}

func TestWitnessNeverAcquires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *vip.Config) { c.Witness = true })
		r.l.SetPeers(vip.Peer{Name: "b", Healthy: true, Voter: true, Priority: 1}, vip.Peer{Name: "c", Healthy: true, Voter: true})
		r.start(t)
		r.l.SetLeader(true)
		synctest.Wait()
		if got := r.l.Transfers(); len(got) != 1 || got[0] != "b" {
			t.Errorf("witness transferred to %q, want b", got)
		}
		// Elected again with no healthy peer known: transfer to any voter, still no VIP.
		r.l.SetPeers()
		r.l.SetLeader(true)
		synctest.Wait()
		if got := r.l.Transfers(); len(got) != 2 || got[1] != "" {
			t.Errorf("witness transfers %q, want a second one to \"\" (any voter)", got)
		}
		if r.events.Index("kernel:add "+ip4.String(), 0) >= 0 || r.k.Answering() || r.m.Held() {
			t.Fatalf("witness acquired the VIP: %v", r.events.Events())
		}
	})
}

func TestWitnessTransferRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *vip.Config) { c.Witness = true; c.VIPs = nil })
		r.l.SetTransferError(errors.New("no voter up to date"))
		r.start(t)
		r.l.SetLeader(true)
		// Three attempts 50 and 100 ms apart, then a new round one VerifyInterval later.
		sleep(150*time.Millisecond + testVerify)
		if n := len(r.l.Transfers()); n != 4 {
			t.Fatalf("%d transfer attempts, want 3 then a 4th after the retry delay", n)
		}
		r.l.SetTransferError(nil)
		n := len(r.l.Transfers())
		sleep(time.Second)
		if got := len(r.l.Transfers()); got <= n {
			t.Fatal("no transfer after the error cleared")
		}
	})
}

func TestLevelCheckReAddsRemovedVIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.start(t)
		r.lead(t)
		r.k.RemoveExternally(ip4)
		sleep(testRefresh)
		if !r.k.Has(ip4) {
			t.Fatal("VIP not re-added at the next refresh")
		}
	})
}

func TestLevelCheckRestartsFailedResponder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *vip.Config) { c.BurstCount = 1 }) // no burst: only the refresh restarts it
		r.k.SetAnswerError(errors.New("socket: operation not permitted"))
		r.start(t)
		r.l.SetLeader(true)
		synctest.Wait()
		if !r.m.Held() || !r.k.Has(ip4) || r.k.Answering() {
			t.Fatalf("held %v, address %v, answering %v: want the VIP added without a responder",
				r.m.Held(), r.k.Has(ip4), r.k.Answering())
		}
		r.k.SetAnswerError(nil)
		sleep(testRefresh - time.Nanosecond)
		if r.k.Answering() {
			t.Fatal("responder restarted before the refresh")
		}
		sleep(time.Nanosecond)
		if !r.k.Answering() {
			t.Fatal("responder not restarted by the refresh")
		}
	})
}

func TestVerifyLeaderFailureReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.start(t)
		r.lead(t)
		sleep(2 * testVerify)
		if n := r.l.Verifies(); n != 2 {
			t.Fatalf("%d verifications after two intervals, want 2", n)
		}
		r.l.SetVerifyError(errors.New("quorum unreachable"))
		r.l.SetBarrierError(errors.New("quorum unreachable"))
		sleep(testVerify)
		if !r.released() {
			t.Fatal("VIP kept after VerifyLeader was refused")
		}
		// Still reported leader but unverified: it must not take the VIP back until a barrier succeeds.
		n := r.l.Barriers()
		sleep(2 * testVerify)
		if r.l.Barriers() < n+2 || r.m.Held() {
			t.Fatalf("barriers %d→%d, held %v: want retries and no VIP without a successful barrier", n, r.l.Barriers(), r.m.Held())
		}
		r.l.SetVerifyError(nil)
		r.l.SetBarrierError(nil)
		sleep(testVerify)
		if !r.holding() {
			t.Fatal("VIP not re-acquired after a successful barrier")
		}
	})
}

// TestVerifyLeaderHonoursContext: a VerifyLeader that does not answer (a slow quorum) is bounded by its
// context. Slow is not refuted, so the VIP stays configured, but the answer fence closes AnswerWindow after
// the last proof; the next proof reopens it; and shutdown does not wait for a hanging verification.
func TestVerifyLeaderHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.start(t)
		r.l.HangVerify(true)
		r.lead(t) // barrier at t0: proof until t0 + AnswerWindow (testHeartbeat)
		t0 := time.Now()

		sleep(testHeartbeat - time.Nanosecond)
		if !r.k.AllowsNow() {
			t.Fatal("fence closed within AnswerWindow of the barrier")
		}
		sleep(time.Nanosecond)
		if r.k.AllowsNow() {
			t.Fatal("fence still open AnswerWindow after the last proof, while VerifyLeader hangs")
		}
		// The verification started at t0+VerifyInterval times out at twice VerifyInterval and is retried.
		if n := r.l.Verifies(); n != 2 {
			t.Errorf("%d verifications by t0+%v, want 2 (the first timed out at 2×VerifyInterval)", n, time.Since(t0))
		}
		announces := r.k.Announces(ip4)
		sleep(2 * testRefresh)
		if !r.holding() {
			t.Fatal("VIP released because verification was slow: slow is not refuted")
		}
		if n := r.k.Announces(ip4) - announces; n != 0 {
			t.Errorf("%d announcements while no proof was recent", n)
		}

		// The retry started at t0+70ms (the third timed out then) is answered 5 ms later; the next one hangs.
		sleep(5 * time.Millisecond)
		r.l.HangVerify(false)
		synctest.Wait()
		r.l.HangVerify(true)
		if !r.k.AllowsNow() {
			t.Fatal("fence not reopened by a successful verification")
		}
		// The window counts from when the verification started, not from its answer.
		proof := t0.Add(70 * time.Millisecond)
		sleep(time.Until(proof.Add(testHeartbeat)) - time.Nanosecond)
		if !r.k.AllowsNow() {
			t.Fatal("fence closed within AnswerWindow of the start of the last proof")
		}
		sleep(time.Nanosecond)
		if r.k.AllowsNow() {
			t.Fatal("fence open AnswerWindow after the start of the last proof: it counted from the answer")
		}

		// A verification is in flight, hanging: shutdown must not wait for it.
		stopped := time.Now()
		r.stop(t)
		if d := time.Since(stopped); d != 0 {
			t.Errorf("Run took %v to stop with VerifyLeader hanging: its context was not honoured", d)
		}
	})
}

func TestPreemption(t *testing.T) {
	tests := []struct {
		name     string
		priority int
		peer     vip.Peer
		want     bool
	}{
		{"higher healthy peer", 1, vip.Peer{Name: "b", Healthy: true, Voter: true, Priority: 2}, true},
		{"equal priority", 1, vip.Peer{Name: "b", Healthy: true, Voter: true, Priority: 1}, false},
		{"higher but unhealthy", 1, vip.Peer{Name: "b", Healthy: false, Voter: true, Priority: 2}, false},
		{"default priorities", 0, vip.Peer{Name: "b", Healthy: true, Voter: true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const delay = 60 * time.Millisecond
				r := newRig(t, func(c *vip.Config) { c.Priority = tc.priority; c.PreemptDelay = delay })
				r.l.SetPeers(tc.peer)
				r.start(t)
				r.lead(t)
				sleep(delay - time.Nanosecond)
				if tr := r.l.Transfers(); len(tr) != 0 {
					t.Fatalf("preempted (%v) before PreemptDelay", tr)
				}
				sleep(time.Nanosecond)
				if !tc.want {
					sleep(2 * delay)
					if tr := r.l.Transfers(); len(tr) != 0 || !r.holding() {
						t.Fatalf("preempted (%v) although it should not", tr)
					}
					return
				}
				if got := r.l.Transfers(); len(got) != 1 || got[0] != "b" {
					t.Errorf("transfers %q at PreemptDelay, want one to b", got)
				}
				if !r.released() {
					t.Fatal("VIP not released on preemption")
				}
			})
		})
	}
}

func TestHooksNeverBlockRelease(t *testing.T) {
	// Real clock: the hooks are external processes, which a synctest bubble cannot wait for.
	r := newRig(t, func(c *vip.Config) {
		c.OnAcquire, c.OnRelease, c.HookTimeout = vip.Hook{Shell: "sleep 30"}, vip.Hook{Argv: []string{"false"}}, 300*time.Millisecond
	})
	r.start(t)
	r.l.SetLeader(true)
	testutil.WaitFor(t, 2*time.Second, "VIP held", r.holding)
	start := time.Now()
	r.l.SetLeader(false)
	testutil.WaitFor(t, 2*time.Second, "VIP released", r.released)
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("release took %v while a hook was hanging", el)
	}
	testutil.WaitFor(t, 3*time.Second, "both hooks counted as failed", func() bool {
		return r.metric(t, "vipd_vip_hook_failures_total", "acquire") == 1 &&
			r.metric(t, "vipd_vip_hook_failures_total", "release") == 1
	})
}

func TestRunReleasesOnShutdownAndCleansStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.k.AddExternally(vip4) // left by a crashed run
		r.start(t)
		synctest.Wait()
		if r.k.Has(ip4) {
			t.Fatal("stale VIP not removed at start")
		}
		r.lead(t)
		r.stop(t)
		if !r.released() {
			t.Fatal("Run returned while still holding the VIP")
		}
		held := r.metric(t, "vipd_vip_held", "")
		acq := r.metric(t, "vipd_vip_transitions_total", "acquire")
		rel := r.metric(t, "vipd_vip_transitions_total", "release")
		if held != 0 || acq != 1 || rel != 1 {
			t.Errorf("metrics: held %v, transitions acquire %v release %v; want 0, 1, 1", held, acq, rel)
		}
		if r.metric(t, "vipd_vip_last_release_timestamp_seconds", "") < r.metric(t, "vipd_vip_last_acquire_timestamp_seconds", "") {
			t.Error("last release timestamp before last acquire timestamp")
		}
	})
}

func TestAnnounceOffStillAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *vip.Config) { c.Announce = false })
		r.start(t)
		r.lead(t)
		sleep(5 * testVerify)
		if n := r.l.Verifies(); n != 5 {
			t.Errorf("%d verifications, want 5", n)
		}
		if n := r.k.Announces(ip4); n != 0 || !r.holding() {
			t.Fatalf("%d announcements with Announce=false (holding %v)", n, r.holding())
		}
	})
}

// TestSubscribeSignalsHeldChanges: the change signal fires on every acquire and release (shutdown included),
// never while the holding state stands, and not after the subscription ended.
func TestSubscribeSignalsHeldChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		ch, stop := r.m.Subscribe()
		defer stop()
		quiet, stopQuiet := r.m.Subscribe()
		stopQuiet()
		signalled := func() bool {
			select {
			case <-ch:
				return true
			default:
				return false
			}
		}
		r.start(t)
		synctest.Wait()
		steps := []struct {
			name     string
			do       func()
			wantSig  bool
			wantHeld bool
		}{
			{"started, not leader", func() {}, false, false},
			{"acquired", func() { r.l.SetLeader(true); synctest.Wait() }, true, true},
			{"holding through refreshes and verifications", func() { sleep(5 * testRefresh) }, false, true},
			{"released on leadership loss", func() { r.l.SetLeader(false); synctest.Wait() }, true, false},
			{"re-acquired", func() { r.l.SetLeader(true); synctest.Wait() }, true, true},
			{"lost and regained in a new term: coalesced into one signal", func() { r.l.Reelect(); synctest.Wait() }, true, true},
			{"released on shutdown", func() { r.stop(t) }, true, false},
		}
		for _, s := range steps {
			s.do()
			if got := signalled(); got != s.wantSig || r.m.Held() != s.wantHeld {
				t.Fatalf("%s: signalled %v, Held %v; want %v, %v", s.name, got, r.m.Held(), s.wantSig, s.wantHeld)
			}
		}
		select {
		case <-quiet:
			t.Fatal("a stopped subscription was signalled")
		default:
		}
	})
}

func TestNewManagerValidates(t *testing.T) {
	l, h, k := viptest.NewFakeLeadership(), viptest.NewFakeHealth(), viptest.NewFakeKernel()
	hb := testHeartbeat
	tests := []struct {
		name string
		cfg  vip.Config
		h    vip.HealthSource
		k    vip.Kernel
	}{
		{"no VIP", vip.Config{RaftHeartbeat: hb}, h, k},
		{"invalid prefix", vip.Config{RaftHeartbeat: hb, VIPs: []netip.Prefix{{}}}, h, k},
		{"duplicate", vip.Config{RaftHeartbeat: hb, VIPs: []netip.Prefix{vip4, vip4}}, h, k},
		{"loopback", vip.Config{RaftHeartbeat: hb, VIPs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/8")}}, h, k},
		{"negative refresh", vip.Config{RaftHeartbeat: hb, VIPs: []netip.Prefix{vip4}, GARPRefresh: -1}, h, k},
		{"negative preempt delay", vip.Config{RaftHeartbeat: hb, VIPs: []netip.Prefix{vip4}, PreemptDelay: -1}, h, k},
		{"no Raft heartbeat", vip.Config{VIPs: []netip.Prefix{vip4}}, h, k},
		{"no kernel", vip.Config{RaftHeartbeat: hb, VIPs: []netip.Prefix{vip4}}, h, nil},
		{"no health", vip.Config{RaftHeartbeat: hb, VIPs: []netip.Prefix{vip4}}, nil, k},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := vip.NewManager(tc.cfg, l, tc.h, tc.k); !errors.Is(err, vip.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := vip.NewManager(vip.Config{Witness: true, RaftHeartbeat: hb}, l, nil, nil); err != nil {
		t.Fatalf("witness without VIP/kernel/health: %v", err)
	}
}

// TestStaleVerifyProofKeepsTheFenceClosed: a VerifyLeader that succeeds on stale evidence — what a leader
// resuming from a pause reads first, the answers to heartbeats it sent before the pause — reports a proof
// from before the pause. The fence counts from that proof, not from the call, so the holder stays silent
// until a fresh proof arrives (the compose suite caught a resumed leader answering beside the new one).
func TestStaleVerifyProofKeepsTheFenceClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.start(t)
		r.lead(t) // barrier now: the fence is open for AnswerWindow
		r.l.SetVerifyAge(2 * testHeartbeat)
		sleep(testHeartbeat + time.Nanosecond) // the barrier's window is over; only verifications since
		if r.k.AllowsNow() {
			t.Fatal("fence open on verifications whose quorum heard from this node two windows ago")
		}
		if !r.holding() {
			t.Fatal("a stale proof is not a refusal: the VIP must stay configured")
		}
		r.l.SetVerifyAge(0)
		sleep(testHeartbeat) // at least one verification round (VerifyInterval is a third of the window)
		if !r.k.AllowsNow() {
			t.Fatal("fence not reopened by a fresh proof")
		}
	})
}

// A holder with one of two frontends down keeps the VIP while its peer is no better, and hands it over once
// the peer is fully healthy; it never waits for a peer to turn healthy when the peer is already healthier.
func TestPartlyHealthyHolderHandsOffOnlyToHealthierPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.l.SetPeers(vip.Peer{Name: "b", Score: 1, Voter: true})
		r.start(t)
		r.lead(t)
		r.h.SetStatus(vip.NodeHealth{Score: 1, Reason: "1 of 2 frontends healthy"})
		sleep(3 * testRefresh)
		if tr := r.l.Transfers(); len(tr) != 0 || !r.holding() {
			t.Fatalf("transfers %v, holding %v: a peer just as partly healthy must not take the VIP", tr, r.holding())
		}
		r.l.SetPeers(vip.Peer{Name: "b", Score: 2, Voter: true}) // still not Healthy, but serves more
		sleep(testRefresh)
		if !slices.Contains(r.l.Transfers(), "b") || !r.released() {
			t.Fatalf("transfers %v, released %v: want a hand-off to b, which serves more frontends",
				r.l.Transfers(), r.released())
		}
	})
}
