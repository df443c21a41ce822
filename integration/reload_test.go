//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipd/vipd/integration/probe"
)

// The reload scenario's settings (issue 10): long-lived connections through the VIP, the drain of the removed
// backend's connections, and the two check intervals.
const (
	reloadConns         = 150
	reloadDrain         = 3 * time.Second
	checkBefore         = 500 * time.Millisecond
	checkAfter          = 250 * time.Millisecond
	checkWindow         = 3 * time.Second
	reloadConfigInMount = "/etc/vipd/conf/vipd.yaml"
)

// reloadEnv runs the compose project with an override file: the three lbs take their backends and checks
// from a -config file in a host directory mounted into every container (the flags keep what is per node),
// and a fourth fake apiserver, api4, stands by to be added. The shared docker-compose.yml stays as it is:
// the override lives in the test's temporary directory.
type reloadEnv struct {
	e        *env
	confDir  string
	override string
}

func (r *reloadEnv) compose(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	base := []string{"-p", r.e.project, "-f", filepath.Join(r.e.root, "docker-compose.yml"), "-f", r.override}
	out, err := r.e.run(timeout, "docker-compose", append(base, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (r *reloadEnv) writeOverride(t *testing.T) {
	t.Helper()
	e := r.e
	var b strings.Builder
	b.WriteString("# Written by TestReloadCompose: the lbs read their backends and checks from a -config file.\nversion: \"2.4\"\nservices:\n")
	for i, n := range lbs {
		fmt.Fprintf(&b, "  %s:\n    command:\n      - agent\n      - -config=%s\n      - -node=%s\n      - -bind=%s.1%d\n",
			n, reloadConfigInMount, n, e.clusterNet, i+1)
		for j := range lbs {
			if j != i {
				fmt.Fprintf(&b, "      - -join=%s.1%d\n", e.clusterNet, j+1)
			}
		}
		fmt.Fprintf(&b, "      - -data-dir=/data\n      - -bootstrap-expect=3\n      - -vip=%s/24\n      - -garp=true\n      - -http-addr=0.0.0.0:7948\n      - -encrypt-file=/etc/vipd/cluster.key\n",
			e.vip())
		fmt.Fprintf(&b, "    volumes:\n      - %s:/etc/vipd/conf:ro\n", r.confDir)
	}
	fmt.Fprintf(&b, "  api4:\n    image: vipd-apiserver:%s\n    init: true\n    restart: \"no\"\n    hostname: api4\n    command: [-name=api4]\n    networks:\n      client: {ipv4_address: %q}\n",
		e.project, e.apiIP("api4"))
	if err := os.WriteFile(r.override, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes the lbs' shared -config file (by rename, so no node reads half of it).
func (r *reloadEnv) writeConfig(t *testing.T, backends []string, interval time.Duration, extra string) {
	t.Helper()
	var addrs []string
	for _, a := range backends {
		addrs = append(addrs, r.e.apiIP(a)+":6443")
	}
	body := fmt.Sprintf(`listen: ":6443"
backend: [%s]
check: https
check-path: /readyz
check-insecure-skip-verify: true
check-interval: %s
check-timeout: 200ms
rise: 1
fall: 2
drain-timeout: %s
%s`, strings.Join(addrs, ", "), interval, reloadDrain, extra)
	tmp := filepath.Join(r.confDir, ".vipd.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.confDir, "vipd.yaml")); err != nil {
		t.Fatal(err)
	}
}

// backendsOf is a node's /v1/backends: address -> state, and the last check time of each.
type backendView struct {
	Frontends []struct {
		Backends []struct {
			Addr      string    `json:"addr"`
			State     string    `json:"state"`
			LastCheck time.Time `json:"last_check"`
		} `json:"backends"`
	} `json:"frontends"`
}

func (r *reloadEnv) backends(svc string) ([]string, map[string]time.Time, error) {
	var v backendView
	if err := r.e.api(svc, "/v1/backends", &v); err != nil {
		return nil, nil, err
	}
	if len(v.Frontends) != 1 {
		return nil, nil, fmt.Errorf("%s: %d frontends", svc, len(v.Frontends))
	}
	var healthy []string
	checked := map[string]time.Time{}
	for _, b := range v.Frontends[0].Backends {
		if b.State == "healthy" {
			healthy = append(healthy, b.Addr)
		}
		checked[b.Addr] = b.LastCheck
	}
	return healthy, checked, nil
}

// checksIn counts the checks of backend addr by node svc that ended within the next window, from the
// distinct last_check times its /v1/backends shows (sampled every 25 ms, well below the intervals).
func (r *reloadEnv) checksIn(svc, addr string, window time.Duration) (int, error) {
	start := time.Now()
	seen := map[time.Time]bool{}
	for time.Since(start) < window {
		_, checked, err := r.backends(svc)
		if err != nil {
			return 0, err
		}
		if at := checked[addr]; at.After(start) {
			seen[at] = true
		}
		time.Sleep(25 * time.Millisecond)
	}
	return len(seen), nil
}

// checkRates measures checksIn on every lb at once.
func (r *reloadEnv) checkRates(t *testing.T, addr string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]int{}
	for _, n := range lbs {
		wg.Go(func() {
			c, err := r.checksIn(n, addr, checkWindow)
			if err != nil {
				t.Errorf("checks of %s by %s: %v", addr, n, err)
			}
			mu.Lock()
			out[n] = c
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// vipConn is a long-lived TLS connection through the VIP, to the upstream that answered its first GET.
type vipConn struct {
	c        net.Conn
	br       *bufio.Reader
	upstream string
}

func (c *vipConn) get() (string, error) { return probe.GetOn(c.c, c.br, time.Now().Add(3*time.Second)) }

var tookRE = regexp.MustCompile(`msg="configuration reloaded" took=(\S+)`)

// TestReloadCompose: the three-node compose cluster, api1..3 behind it, 150 keep-alive connections through
// the VIP and a probe opening a new one every 10 ms. `vipd reload` on every node swaps api2 for api4 and
// checks every 200 ms instead of every 500 ms. The VIP must stay where it is (same leader, one MAC answering
// ARP), no new connection may fail, no connection may close but api2's, and those only after
// -drain-timeout; api4 must serve. A broken file is refused and changes nothing.
func TestReloadCompose(t *testing.T) {
	e := newEnv(t)
	s := &suite{env: e}
	r := &reloadEnv{e: e, confDir: t.TempDir()}
	r.override = filepath.Join(t.TempDir(), "docker-compose.reload.yml")
	t.Cleanup(func() {
		if t.Failed() {
			s.saveLogs(t)
		}
		for _, p := range e.down() {
			t.Errorf("cleanup of %s: %s", e.project, p)
		}
	})
	removeOnSignal(t, e, s)
	e.build(t)
	r.writeOverride(t)
	r.writeConfig(t, []string{"api1", "api2", "api3"}, checkBefore, "")
	r.compose(t, 2*time.Minute, "up", "-d", "--no-build", "api1", "api2", "api3", "api4")
	s.startObservers(t)
	r.compose(t, 2*time.Minute, "up", "-d", "--no-build", "--no-deps", "lb1", "lb2", "lb3")
	s.learnMACs(t)
	leader := s.waitStable(t, "cluster start", lbs, 120*time.Second)
	addr := func(api string) string { return e.apiIP(api) + ":6443" }
	waitFor(t, 30*time.Second, "api1..3 healthy on every node", func() error {
		for _, n := range lbs {
			h, _, err := r.backends(n)
			if err != nil {
				return err
			}
			if !slices.Equal(h, []string{addr("api1"), addr("api2"), addr("api3")}) {
				return fmt.Errorf("%s: healthy %v", n, h)
			}
		}
		return nil
	})

	// A second probe with generous timeouts counts failed new connections; the suite's 10 ms / 50 ms probe
	// measures the outage as in the failover scenarios.
	strict := probe.New(probe.Config{Addr: net.JoinHostPort(e.vip().String(), "6443"), HTTPS: true,
		Interval: 10 * time.Millisecond, ConnectTimeout: time.Second, RequestTimeout: 3 * time.Second})
	pctx, stopProbe := context.WithCancel(context.Background())
	var pwg sync.WaitGroup
	pwg.Go(func() { strict.Run(pctx) })
	t.Cleanup(func() { stopProbe(); pwg.Wait() })

	var conns []*vipConn
	t.Cleanup(func() {
		for _, c := range conns {
			c.c.Close()
		}
	})
	per := map[string]int{}
	for range reloadConns {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(e.vip().String(), "6443"), 3*time.Second)
		if err != nil {
			t.Fatalf("dial the VIP: %v", err)
		}
		tc := probe.NewTLS(c)
		vc := &vipConn{c: tc, br: bufio.NewReader(tc)}
		conns = append(conns, vc)
		if vc.upstream, err = vc.get(); err != nil {
			t.Fatalf("first GET on a connection through the VIP: %v", err)
		}
		per[vc.upstream]++
	}
	t.Logf("%d keep-alive connections through the VIP (%s): %v", len(conns), leader, per)
	if per["api1"] == 0 || per["api2"] == 0 || per["api3"] == 0 {
		t.Fatalf("connections did not spread over api1..3: %v", per)
	}
	before := r.checkRates(t, addr("api1"))

	// The reload, leader first, then the followers.
	r.writeConfig(t, []string{"api1", "api3", "api4"}, checkAfter, "")
	t0 := time.Now()
	cmdTook := map[string]time.Duration{}
	reload := func(n string) {
		start := time.Now()
		out, err := e.cli(n, "reload")
		cmdTook[n] = time.Since(start)
		if err != nil || !strings.Contains(out, "reloaded") {
			t.Fatalf("vipd reload on %s: %v %s", n, err, out)
		}
	}
	reload(leader)
	// Half way through the drain api2's connections still work; then each waits in a read that only the
	// proxy's close ends. A GET that starts too late (a loaded machine) proves nothing and is skipped.
	time.Sleep(time.Until(t0.Add(reloadDrain / 2)))
	closedAt := make([]time.Duration, 0, per["api2"])
	var closedMu sync.Mutex
	var cwg sync.WaitGroup
	verified := 0
	for _, c := range conns {
		if c.upstream != "api2" {
			continue
		}
		if time.Since(t0) > reloadDrain-200*time.Millisecond {
			continue
		}
		up, err := c.get()
		if err != nil || up != "api2" {
			t.Errorf("a connection to api2 failed %s after the reload, within the drain: %q, %v", time.Since(t0).Round(time.Millisecond), up, err)
			continue
		}
		verified++
		cwg.Go(func() {
			_ = c.c.SetReadDeadline(t0.Add(reloadDrain + 10*time.Second))
			_, err := c.br.ReadByte()
			closedMu.Lock()
			closedAt = append(closedAt, time.Since(t0))
			closedMu.Unlock()
			if err == nil {
				t.Errorf("a connection to api2 received data nobody asked for")
			}
		})
	}
	if verified < per["api2"]/2 {
		t.Errorf("only %d of %d connections to api2 could be checked within the drain", verified, per["api2"])
	}
	for _, c := range conns {
		if c.upstream == "api2" {
			continue
		}
		if up, err := c.get(); err != nil || up != c.upstream {
			t.Errorf("a connection to %s after the leader's reload: %q, %v", c.upstream, up, err)
		}
	}
	for _, n := range others(leader) {
		reload(n)
	}
	cwg.Wait()
	sort.Slice(closedAt, func(i, j int) bool { return closedAt[i] < closedAt[j] })
	if len(closedAt) > 0 {
		if closedAt[0] < reloadDrain {
			t.Errorf("a connection to api2 ended %s after the reload, before -drain-timeout %s", closedAt[0].Round(time.Millisecond), reloadDrain)
		}
		if last := closedAt[len(closedAt)-1]; last > reloadDrain+5*time.Second {
			t.Errorf("connections to api2 still open %s after the reload (-drain-timeout %s)", last.Round(time.Millisecond), reloadDrain)
		}
	}

	waitFor(t, 15*time.Second, "api1, api3, api4 healthy on every node", func() error {
		for _, n := range lbs {
			h, _, err := r.backends(n)
			if err != nil {
				return err
			}
			if !slices.Equal(h, []string{addr("api1"), addr("api3"), addr("api4")}) {
				return fmt.Errorf("%s: healthy %v", n, h)
			}
		}
		return nil
	})
	afterRates := r.checkRates(t, addr("api1"))
	for _, n := range lbs {
		if before[n] > 7 || afterRates[n] < 10 {
			t.Errorf("%s checked api1 %d times in %s before the reload (every %s) and %d after (every %s)",
				n, before[n], checkWindow, checkBefore, afterRates[n], checkAfter)
		}
	}
	var firstAPI4 time.Duration
	for _, smp := range strict.Samples(t0, time.Now()) {
		if smp.OK && smp.Backend == "api4" {
			firstAPI4 = smp.Start.Add(smp.Latency).Sub(t0)
			break
		}
	}
	if firstAPI4 == 0 {
		t.Errorf("api4 answered no probe through the VIP after the reload")
	}

	// A broken file: refused on the leader with the reason, nothing changes.
	r.writeConfig(t, []string{"api1", "api1"}, 5*time.Second, "")
	refusal, err := e.cli(leader, "reload")
	refusal = strings.TrimSpace(refusal)
	if err == nil || !strings.Contains(refusal, "reload refused") || !strings.Contains(refusal, "-backend: "+addr("api1")+" is listed twice") {
		t.Errorf("vipd reload of a broken file on %s: %v\n%s", leader, err, refusal)
	}
	if h, _, err := r.backends(leader); err != nil || !slices.Equal(h, []string{addr("api1"), addr("api3"), addr("api4")}) {
		t.Errorf("after a refused reload %s has healthy backends %v (%v), want api1, api3, api4", leader, h, err)
	}
	r.writeConfig(t, []string{"api1", "api3", "api4"}, checkAfter, "")

	// Everything else survived, and the VIP never moved.
	for _, c := range conns {
		if c.upstream == "api2" {
			continue
		}
		if up, err := c.get(); err != nil || up != c.upstream {
			t.Errorf("connection to %s after the reloads: %q, %v", c.upstream, up, err)
		}
	}
	end := time.Now()
	stopProbe()
	pwg.Wait()
	o := strict.Measure(t0.Add(-time.Second), end)
	if o.Failed > 0 {
		t.Errorf("%d new connections through the VIP failed during the reloads: %v", o.Failed, o.Errors)
	}
	fast := s.measure(t, "12 reload on every node (api2 → api4)", t0, noOutageBound, "150 keep-alive conns; only api2's closed, after the drain")
	if l, err := s.stable(t, lbs); err != nil || l != leader {
		t.Errorf("after the reloads: leader %q (%v), want %s unchanged%s", l, err, leader, s.leaderEvents(t0))
	}
	a := s.arp.Report(t0.Add(-time.Second), time.Now())
	if len(a.Answers) != 1 || a.Answers[e.mac(t, leader)] == 0 || a.TwoMACWindows > 0 {
		t.Errorf("ARP for the VIP during the reloads: answers %s, two-MAC windows %d; want only %s", s.answers(t, a), a.TwoMACWindows, leader)
	}

	// The figures: each node's own "configuration reloaded took=…", and what clients saw.
	var applied []string
	for _, n := range lbs {
		logs, _ := e.docker("logs", "--since", t0.Add(-time.Second).UTC().Format(time.RFC3339Nano), e.container(n))
		m := tookRE.FindStringSubmatch(logs)
		if m == nil {
			t.Errorf("%s logged no \"configuration reloaded took=…\"", n)
			continue
		}
		applied = append(applied, fmt.Sprintf("%s took=%s (vipd reload command %s)", n, m[1], cmdTook[n].Round(time.Millisecond)))
	}
	summary := fmt.Sprintf(`
=== vipd reload under load: %s, leader %s ===
applied: %s
api4 first answered through the VIP %s after the leader's reload
%d keep-alive connections %v: the %d to api2 closed %s–%s after the reload (-drain-timeout %s), all others answered afterwards
new connections through the VIP (every 10 ms): %d, %d failed; longest gap %s; the VIP stayed on %s (ARP answers %s, two-MAC windows %d)
checks of api1 in %s per node: before %v (every %s), after %v (every %s)
a broken file on %s: %s
`, e.project, leader, strings.Join(applied, "; "), firstAPI4.Round(time.Millisecond), len(conns), per, len(closedAt),
		first(closedAt).Round(time.Millisecond), last(closedAt).Round(time.Millisecond), reloadDrain,
		len(strict.Samples(t0.Add(-time.Second), end)), o.Failed, fast.outage.Round(time.Millisecond), leader, s.answers(t, a), a.TwoMACWindows,
		checkWindow, before, checkBefore, afterRates, checkAfter, leader, refusal)
	t.Log(summary)
	report.add(summary)
}

func first(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[0]
}

func last(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)-1]
}
