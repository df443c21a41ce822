//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// members mirrors agent.MembersResponse (GET /v1/members), kept separate so
// the suite compiles against the wire format, not the agent's Go types.
type members struct {
	Self      string   `json:"self"`
	Leader    string   `json:"leader"`
	VIPHolder string   `json:"vip_holder"`
	Note      string   `json:"note"`
	Members   []member `json:"members"`
}

type member struct {
	Name            string `json:"name"`
	Status          string `json:"status"`
	Role            string `json:"role"`
	Leader          bool   `json:"leader"`
	Healthy         bool   `json:"healthy"`
	HealthyBackends int    `json:"healthy_backends"`
	VIPHeld         bool   `json:"vip_held"`
	Version         string `json:"version"`
}

// status mirrors agent.StatusResponse (GET /v1/status): this node's own view.
type status struct {
	Node    string `json:"node"`
	Role    string `json:"role"`
	Leader  string `json:"leader"`
	VIPHeld bool   `json:"vip_held"`
	Healthy bool   `json:"healthy"`
}

var adminClient = &http.Client{Timeout: 500 * time.Millisecond}

// api asks a node's admin API over the client network (faster than docker
// exec, so it can be polled); the CLI itself is exercised in scenarios 1, 8
// and in every failure report.
func (e *env) api(svc, path string, out any) error {
	resp, err := adminClient.Get(fmt.Sprintf("http://%s:7948%s", e.lbIP(svc), path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s on %s: status %d", path, svc, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (e *env) members(svc string) (members, error) {
	var m members
	return m, e.explain(svc, e.api(svc, "/v1/members", &m))
}

func (e *env) status(svc string) (status, error) {
	var s status
	return s, e.explain(svc, e.api(svc, "/v1/status", &s))
}

// explain adds the container's state to an admin API error when it is not
// simply running: a crashed vipd (exit code 2 is a Go panic) or a paused one.
func (e *env) explain(svc string, err error) error {
	if err == nil {
		return nil
	}
	st, ierr := e.docker("inspect", "-f", "{{.State.Status}} (exit code {{.State.ExitCode}})", e.container(svc))
	if ierr != nil || strings.HasPrefix(st, "running") {
		return err
	}
	return fmt.Errorf("%w; container %s is %s", err, svc, st)
}

// cli runs the vipd CLI inside a node, as an operator would.
func (e *env) cli(svc string, args ...string) (string, error) {
	return e.run(20*time.Second, "docker", append([]string{"exec", e.container(svc), "/vipd"}, args...)...)
}

// poll calls cond every 50 ms until it returns nil or timeout passes, and
// returns cond's last error then.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls cond until it returns nil; the test fails with the last
// error if timeout passes first.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
}

// stable checks that the nodes in up agree on one leader among them, that
// all of them are alive, healthy voters in its view, that the leader holds
// the VIP by its own status, by gossip and by ARP, and that the VIP answers.
// It returns the leader.
func (s *suite) stable(t *testing.T, up []string) (string, error) {
	e := s.env
	lm, err := e.members(up[0])
	if err != nil {
		return "", err
	}
	leader := lm.Leader
	if leader == "" {
		return "", fmt.Errorf("%s knows no leader (%s)", up[0], lm.Note)
	}
	if !contains(up, leader) {
		return "", fmt.Errorf("%s still names %s leader, which is not among %v", up[0], leader, up)
	}
	for _, n := range up[1:] {
		m, err := e.members(n)
		if err != nil {
			return "", err
		}
		if m.Leader != leader {
			return "", fmt.Errorf("%s says leader %q, %s says %q", up[0], leader, n, m.Leader)
		}
	}
	lv, err := e.members(leader)
	if err != nil {
		return "", err
	}
	for _, n := range up {
		found := false
		for _, m := range lv.Members {
			if m.Name == n {
				found = true
				if m.Status != "alive" || (m.Role != "leader" && m.Role != "follower") {
					return "", fmt.Errorf("leader %s sees %s as %s/%s", leader, n, m.Status, m.Role)
				}
				if !m.Healthy {
					return "", fmt.Errorf("leader %s sees %s unhealthy", leader, n)
				}
			}
		}
		if !found {
			return "", fmt.Errorf("leader %s does not list %s", leader, n)
		}
	}
	if lv.VIPHolder != leader {
		return "", fmt.Errorf("leader %s's gossip names %q the VIP holder (%s)", leader, lv.VIPHolder, lv.Note)
	}
	st, err := e.status(leader)
	if err != nil {
		return "", err
	}
	if !st.VIPHeld {
		return "", fmt.Errorf("leader %s does not hold the VIP", leader)
	}
	since := time.Now().Add(-300 * time.Millisecond)
	if h := s.arp.Holder(since); h != e.mac(t, leader) {
		return "", fmt.Errorf("ARP for the VIP answered by %q in the last 300 ms, want the leader %s (%s)", e.nodeOfMAC(h), leader, e.mac(t, leader))
	}
	if !s.probe.OKSince(since) {
		return "", fmt.Errorf("VIP not answering through %s in the last 300 ms", leader)
	}
	return leader, nil
}

// waitStable waits until the nodes in up form a stable cluster (see stable)
// and returns its leader; what says which step is waiting, for the failure.
func (s *suite) waitStable(t *testing.T, what string, up []string, timeout time.Duration) string {
	t.Helper()
	var leader string
	waitFor(t, timeout, what+": cluster of "+fmt.Sprint(up)+" stable", func() error {
		l, err := s.stable(t, up)
		leader = l
		return err
	})
	return leader
}

// others returns the lbs other than these.
func others(not ...string) []string {
	var out []string
	for _, n := range lbs {
		if !contains(not, n) {
			out = append(out, n)
		}
	}
	return out
}

// cut drops all cluster-network traffic of svc in both directions, from the
// host with nsenter: the node stays reachable for clients.
func (e *env) cut(svc string) error {
	net := e.clusterNet + ".0/24"
	if err := e.netns(svc, "iptables", "-w", "-I", "INPUT", "-s", net, "-j", "DROP"); err != nil {
		return err
	}
	return e.netns(svc, "iptables", "-w", "-I", "OUTPUT", "-d", net, "-j", "DROP")
}

func (e *env) heal(svc string) error {
	net := e.clusterNet + ".0/24"
	err1 := e.netns(svc, "iptables", "-w", "-D", "INPUT", "-s", net, "-j", "DROP")
	err2 := e.netns(svc, "iptables", "-w", "-D", "OUTPUT", "-d", net, "-j", "DROP")
	if err1 != nil {
		return err1
	}
	return err2
}

// blockUpstreams makes every apiserver unreachable from svc only (REJECT, so
// checks fail at once rather than time out).
func (e *env) blockUpstreams(svc string, on bool) error {
	op := "-I"
	if !on {
		op = "-D"
	}
	for _, a := range []string{"api1", "api2", "api3"} {
		if err := e.netns(svc, "iptables", "-w", op, "OUTPUT", "-d", e.apiIP(a), "-p", "tcp", "--dport", "6443",
			"-j", "REJECT", "--reject-with", "tcp-reset"); err != nil {
			return err
		}
	}
	return nil
}

// flushRules removes every iptables rule a scenario may have left in svc.
func (e *env) flushRules(svc string) error {
	if err := e.netns(svc, "iptables", "-w", "-F", "INPUT"); err != nil {
		return err
	}
	return e.netns(svc, "iptables", "-w", "-F", "OUTPUT")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
