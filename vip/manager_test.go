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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipd/vipd/vip"
	"github.com/vipd/vipd/vip/viptest"
)

var (
	vip4 = netip.MustParsePrefix("10.0.0.50/24")
	ip4  = vip4.Addr()
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
		VIPs: []netip.Prefix{vip4}, Announce: true, GARPRefresh: 20 * time.Millisecond, BurstCount: 3,
		BurstInterval: 5 * time.Millisecond, VerifyInterval: 10 * time.Millisecond,
		HookTimeout: 2 * time.Second, Logger: testLogger(t), Metrics: vip.NewMetrics(r.reg),
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

func TestAcquireOnlyAfterBarrier(t *testing.T) {
	r := newRig(t, nil)
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
	b, a := r.events.Index("raft:barrier", 0), r.events.Index("kernel:add "+ip4.String(), 0)
	if b < 0 || a < 0 || b > a {
		t.Fatalf("barrier at %d, add at %d: want barrier strictly before add; events %v", b, a, r.events.Events())
	}
	waitFor(t, 2*time.Second, "burst then refresh announcements", func() bool { return r.k.Announces(ip4) >= 5 })
	if got := r.metric(t, "vipd_vip_held", ""); got != 1 {
		t.Errorf("vipd_vip_held = %v, want 1", got)
	}
	if got := r.metric(t, "vipd_garp_sent_total", ""); got < 5 {
		t.Errorf("vipd_garp_sent_total = %v, want >= 5", got)
	}
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
	r := newRig(t, nil)
	r.l.SetBarrierError(errors.New("leadership lost while committing barrier"))
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "barrier retried", func() bool { return r.l.Barriers() >= 3 })
	if r.events.Index("kernel:add "+ip4.String(), 0) >= 0 || r.m.Held() {
		t.Fatalf("VIP acquired although every barrier failed: %v", r.events.Events())
	}
	// Once a barrier succeeds the node, still leader, takes the VIP.
	r.l.SetBarrierError(nil)
	waitFor(t, 2*time.Second, "VIP held after a successful barrier", r.holding)
}

func TestReleaseOnLeadershipLossBeforeHook(t *testing.T) {
	dir := t.TempDir()
	marker, out := filepath.Join(dir, "held"), filepath.Join(dir, "out")
	k := &markerKernel{FakeKernel: viptest.NewFakeKernel(), marker: marker}
	l, h := viptest.NewFakeLeadership(), viptest.NewFakeHealth()
	m, err := vip.NewManager(vip.Config{
		VIPs: []netip.Prefix{vip4}, Announce: true, Logger: testLogger(t),
		// The hook reports whether the address was still configured when it ran.
		OnRelease: `if [ -e "` + marker + `" ]; then echo still-held; else echo released; fi > "` + out + `"`,
	}, l, h, k)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{k: k.FakeKernel, m: m}
	r.start(t)
	l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
	l.SetLeader(false)
	waitFor(t, 2*time.Second, "release hook output", func() bool { _, err := os.Stat(out); return err == nil })
	waitFor(t, time.Second, "hook output written", func() bool {
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
			// Our priority is above every peer's, so only health (not preemption) moves the VIP.
			r := newRig(t, func(c *vip.Config) { c.Priority = 100 })
			r.l.SetPeers(peers...)
			if tc.unhealthyBefore {
				r.h.Set(false, "0 of 3 backends healthy")
			}
			r.start(t)
			r.l.SetLeader(true)
			if !tc.unhealthyBefore {
				waitFor(t, 2*time.Second, "VIP held", r.holding)
				r.h.Set(false, "listener down")
			}
			waitFor(t, 2*time.Second, "a transfer", func() bool { return len(r.l.Transfers()) > 0 })
			if got := r.l.Transfers(); got[0] != "a2" {
				t.Fatalf("transferred to %q, want a2 (healthy voter of highest priority, then lowest name)", got[0])
			}
			waitFor(t, time.Second, "VIP released", r.released)
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
	}
}

func TestUnhealthyWithoutHealthyPeerKeepsVIP(t *testing.T) {
	r := newRig(t, nil)
	r.l.SetPeers(vip.Peer{Name: "b", Healthy: false, Voter: true}, vip.Peer{Name: "w", Healthy: true, Voter: true, Witness: true})
	r.h.Set(false, "0 of 3 backends healthy")
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
	r.h.Set(false, "still unhealthy")
	waitFor(t, 2*time.Second, "several refreshes", func() bool { return r.k.Announces(ip4) >= 6 })
	if tr := r.l.Transfers(); len(tr) != 0 || !r.holding() {
		t.Fatalf("transfers %v, holding %v: want the VIP kept when no peer is healthy", tr, r.holding())
	}
	// A healthy peer appears: the next level check hands off.
	r.l.SetPeers(vip.Peer{Name: "b", Healthy: true, Voter: true})
	waitFor(t, 2*time.Second, "hand-off to b", func() bool { return slices.Contains(r.l.Transfers(), "b") })
	waitFor(t, time.Second, "VIP released", r.released)
}

func TestWitnessNeverAcquires(t *testing.T) {
	r := newRig(t, func(c *vip.Config) { c.Witness = true })
	r.l.SetPeers(vip.Peer{Name: "b", Healthy: true, Voter: true, Priority: 1}, vip.Peer{Name: "c", Healthy: true, Voter: true})
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "a transfer", func() bool { return len(r.l.Transfers()) > 0 })
	if got := r.l.Transfers()[0]; got != "b" {
		t.Errorf("witness transferred to %q, want b", got)
	}
	// Elected again with no healthy peer known: transfer to any voter, still no VIP.
	r.l.SetPeers()
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "second transfer", func() bool { return len(r.l.Transfers()) > 1 })
	if got := r.l.Transfers()[1]; got != "" {
		t.Errorf("witness transferred to %q, want \"\" (any voter)", got)
	}
	if r.events.Index("kernel:add "+ip4.String(), 0) >= 0 || r.k.Answering() || r.m.Held() {
		t.Fatalf("witness acquired the VIP: %v", r.events.Events())
	}
}

func TestWitnessTransferRetried(t *testing.T) {
	r := newRig(t, func(c *vip.Config) { c.Witness = true; c.VIPs = nil })
	r.l.SetTransferError(errors.New("no voter up to date"))
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "bounded retries, then more later", func() bool { return len(r.l.Transfers()) >= 4 })
	r.l.SetTransferError(nil)
	n := len(r.l.Transfers())
	waitFor(t, 2*time.Second, "a successful transfer", func() bool { return len(r.l.Transfers()) > n })
}

func TestLevelCheckReAddsRemovedVIP(t *testing.T) {
	r := newRig(t, nil)
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
	r.k.RemoveExternally(ip4)
	waitFor(t, 2*time.Second, "VIP re-added", func() bool { return r.k.Has(ip4) })
}

func TestLevelCheckRestartsFailedResponder(t *testing.T) {
	r := newRig(t, nil)
	r.k.SetAnswerError(errors.New("socket: operation not permitted"))
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP added", func() bool { return r.m.Held() && r.k.Has(ip4) })
	r.k.SetAnswerError(nil)
	waitFor(t, 2*time.Second, "responder restarted", r.k.Answering)
}

func TestVerifyLeaderFailureReleases(t *testing.T) {
	r := newRig(t, nil)
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
	waitFor(t, 2*time.Second, "periodic verification", func() bool { return r.l.Verifies() >= 2 })
	r.l.SetVerifyError(errors.New("quorum unreachable"))
	r.l.SetBarrierError(errors.New("quorum unreachable"))
	waitFor(t, 2*time.Second, "VIP released", r.released)
	// Still reported leader but unverified: it must not take the VIP back until a barrier succeeds.
	n := r.l.Barriers()
	waitFor(t, 2*time.Second, "barrier retries", func() bool { return r.l.Barriers() >= n+2 })
	if r.m.Held() {
		t.Fatal("re-acquired without a successful barrier")
	}
	r.l.SetVerifyError(nil)
	r.l.SetBarrierError(nil)
	waitFor(t, 2*time.Second, "VIP re-acquired", r.holding)
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
			const delay = 60 * time.Millisecond
			r := newRig(t, func(c *vip.Config) { c.Priority = tc.priority; c.PreemptDelay = delay })
			r.l.SetPeers(tc.peer)
			r.start(t)
			r.l.SetLeader(true)
			waitFor(t, 2*time.Second, "VIP held", r.holding)
			start := time.Now()
			if !tc.want {
				waitFor(t, 2*time.Second, "well past the delay", func() bool {
					return time.Since(start) > 3*delay && r.k.Announces(ip4) >= 8
				})
				if tr := r.l.Transfers(); len(tr) != 0 || !r.holding() {
					t.Fatalf("preempted (%v) although it should not", tr)
				}
				return
			}
			waitFor(t, 2*time.Second, "preemption", func() bool { return len(r.l.Transfers()) > 0 })
			if el := time.Since(start); el < delay-5*time.Millisecond {
				t.Errorf("preempted after %v, before PreemptDelay %v", el, delay)
			}
			if got := r.l.Transfers()[0]; got != "b" {
				t.Errorf("preempted to %q, want b", got)
			}
			waitFor(t, time.Second, "VIP released", r.released)
		})
	}
}

func TestHooksNeverBlockRelease(t *testing.T) {
	r := newRig(t, func(c *vip.Config) {
		c.OnAcquire, c.OnRelease, c.HookTimeout = "sleep 30", "exit 3", 300*time.Millisecond
	})
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
	start := time.Now()
	r.l.SetLeader(false)
	waitFor(t, 2*time.Second, "VIP released", r.released)
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("release took %v while a hook was hanging", el)
	}
	waitFor(t, 3*time.Second, "both hooks counted as failed", func() bool {
		return r.metric(t, "vipd_vip_hook_failures_total", "acquire") == 1 &&
			r.metric(t, "vipd_vip_hook_failures_total", "release") == 1
	})
}

func TestRunReleasesOnShutdownAndCleansStale(t *testing.T) {
	r := newRig(t, nil)
	r.k.AddExternally(vip4) // left by a crashed run
	r.start(t)
	waitFor(t, 2*time.Second, "stale VIP removed", func() bool { return !r.k.Has(ip4) })
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
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
}

func TestAnnounceOffStillAnswers(t *testing.T) {
	r := newRig(t, func(c *vip.Config) { c.Announce = false })
	r.start(t)
	r.l.SetLeader(true)
	waitFor(t, 2*time.Second, "VIP held", r.holding)
	waitFor(t, 2*time.Second, "some refreshes", func() bool { return r.l.Verifies() >= 5 })
	if n := r.k.Announces(ip4); n != 0 {
		t.Fatalf("%d announcements with Announce=false", n)
	}
}

func TestNewManagerValidates(t *testing.T) {
	l, h, k := viptest.NewFakeLeadership(), viptest.NewFakeHealth(), viptest.NewFakeKernel()
	tests := []struct {
		name string
		cfg  vip.Config
		h    vip.HealthSource
		k    vip.Kernel
	}{
		{"no VIP", vip.Config{}, h, k},
		{"invalid prefix", vip.Config{VIPs: []netip.Prefix{{}}}, h, k},
		{"duplicate", vip.Config{VIPs: []netip.Prefix{vip4, vip4}}, h, k},
		{"loopback", vip.Config{VIPs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/8")}}, h, k},
		{"negative refresh", vip.Config{VIPs: []netip.Prefix{vip4}, GARPRefresh: -1}, h, k},
		{"negative preempt delay", vip.Config{VIPs: []netip.Prefix{vip4}, PreemptDelay: -1}, h, k},
		{"no kernel", vip.Config{VIPs: []netip.Prefix{vip4}}, h, nil},
		{"no health", vip.Config{VIPs: []netip.Prefix{vip4}}, nil, k},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := vip.NewManager(tc.cfg, l, tc.h, tc.k); !errors.Is(err, vip.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := vip.NewManager(vip.Config{Witness: true}, l, nil, nil); err != nil {
		t.Fatalf("witness without VIP/kernel/health: %v", err)
	}
}
