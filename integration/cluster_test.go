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
// exec, so it can be polled); the CLI itself is exercised in scenario 1.
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
	return m, e.api(svc, "/v1/members", &m)
}

func (e *env) status(svc string) (status, error) {
	var s status
	return s, e.api(svc, "/v1/status", &s)
}

// cli runs the vipd CLI inside a node, as an operator would.
func (e *env) cli(svc string, args ...string) (string, error) {
	return e.run(30*time.Second, "docker", append([]string{"exec", e.container(svc), "/vipd"}, args...)...)
}

// waitFor polls cond until it returns nil or timeout passes; the last error
// explains the failure.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stable checks that the nodes in up agree on one leader, that all of them
// are alive voters in its view, that the leader holds the VIP by its own
// status and by ARP, and that the VIP answers. It returns the leader.
func (s *suite) stable(up []string) (string, error) {
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
	st, err := e.status(leader)
	if err != nil {
		return "", err
	}
	if !st.VIPHeld {
		return "", fmt.Errorf("leader %s does not hold the VIP", leader)
	}
	since := time.Now().Add(-300 * time.Millisecond)
	if h := s.arp.Holder(since); h != e.mac(leader) {
		return "", fmt.Errorf("ARP for the VIP answered by %q, want the leader %s (%s)", e.nodeOfMAC(h), leader, e.mac(leader))
	}
	if !s.probe.OKSince(since) {
		return "", fmt.Errorf("VIP not answering through %s", leader)
	}
	return leader, nil
}

func (s *suite) waitStable(t *testing.T, up []string, timeout time.Duration) string {
	t.Helper()
	var leader string
	waitFor(t, timeout, "cluster stable", func() error {
		l, err := s.stable(up)
		leader = l
		return err
	})
	return leader
}

// others returns the lbs other than these.
func others(not ...string) []string {
	var out []string
	for _, n := range lbs {
		skip := false
		for _, x := range not {
			skip = skip || x == n
		}
		if !skip {
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

// restore brings every lb back after a scenario, whatever it left behind.
func (s *suite) restore(t *testing.T) {
	t.Helper()
	e := s.env
	for _, n := range lbs {
		state, _ := e.docker("inspect", "-f", "{{.State.Status}}", e.container(n))
		switch strings.TrimSpace(state) {
		case "paused":
			e.docker("unpause", e.container(n))
		case "exited", "created":
			e.docker("start", e.container(n))
		}
		if strings.TrimSpace(state) != "exited" {
			for e.heal(n) == nil {
			}
			for e.blockUpstreams(n, false) == nil {
			}
		}
	}
	s.waitStable(t, lbs, 90*time.Second)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
