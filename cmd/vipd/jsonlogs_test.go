package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/agent"
	"github.com/vipd/vipd/internal/testutil"
)

// logNode is one `vipd agent` of TestJSONLogsOfAThreeNodeRun, run in this process by run().
type logNode struct {
	name, bind, gossip, raft, admin string
	stderr                          *syncWriter
	buf                             *bytes.Buffer
	done                            chan int
}

// TestJSONLogsOfAThreeNodeRun runs three agents with -log-format json at debug level — formation, an
// election, the leader leaving (a leadership transfer, configuration changes), then the others, the last
// one alone — and parses every line they logged: each must be one JSON object, no object may hold a key
// twice (encoding/json would not notice: the last wins), and no printf verb may be left unformatted. It
// runs with a cluster key and with mutual TLS, whose gossip transport logs on its own.
func TestJSONLogsOfAThreeNodeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("forms and dissolves two three-node clusters")
	}
	for _, mode := range []string{"key", "mtls"} {
		t.Run(mode, func(t *testing.T) { jsonLogsRun(t, mode) })
	}
}

func jsonLogsRun(t *testing.T, mode string) {
	dir := t.TempDir()
	backend, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Cleanup(func() { backend.Close() })
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	security := securityFlags(t, dir, mode)
	nodes := make([]*logNode, 3)
	for i := range nodes {
		var buf bytes.Buffer
		nodes[i] = &logNode{name: fmt.Sprintf("lb%d", i+1), bind: "127.0.0.1", gossip: udpTCPPort(t), raft: port(t),
			admin: freeAddr(t), buf: &buf, stderr: &syncWriter{w: &buf}, done: make(chan int, 1)}
	}
	for i, n := range nodes {
		args := []string{"agent", "-node", n.name, "-bind", n.bind, "-gossip-port", n.gossip, "-raft-port", n.raft,
			"-data-dir", filepath.Join(dir, n.name), "-bootstrap-expect", "3", "-listen", freeAddr(t),
			"-backend", backend.Addr().String(), "-check-interval", "100ms", "-http-addr", n.admin, "-nice", "0",
			"-log-format", "json", "-log-level", "debug"}
		for j, p := range nodes {
			if j != i {
				args = append(args, "-join", net.JoinHostPort(p.bind, p.gossip))
			}
		}
		args = append(args, security(n.name)...)
		go func() { n.done <- run(args, io.Discard, n.stderr) }()
	}
	stopped := map[*logNode]bool{}
	t.Cleanup(func() {
		for _, n := range nodes {
			if !stopped[n] {
				run([]string{"leave", "-http-addr", n.admin}, io.Discard, io.Discard)
				select {
				case <-n.done:
				case <-time.After(15 * time.Second):
					t.Errorf("%s did not stop", n.name)
				}
			}
		}
	})

	status := func(n *logNode) (agent.StatusResponse, error) {
		var st agent.StatusResponse
		resp, err := http.Get("http://" + n.admin + "/v1/status")
		if err != nil {
			return st, err
		}
		defer resp.Body.Close()
		return st, json.NewDecoder(resp.Body).Decode(&st)
	}
	leader := func(among []*logNode, voters int) *logNode {
		var l *logNode
		testutil.WaitForErr(t, 30*time.Second, fmt.Sprintf("%d voters agreeing on a leader", voters), func() error {
			l = nil
			for _, n := range among {
				st, err := status(n)
				if err != nil {
					return err
				}
				if st.Voters != voters || st.Leader == "" {
					return fmt.Errorf("%s: %d voters, leader %q", n.name, st.Voters, st.Leader)
				}
				for _, m := range among {
					if m.name == st.Leader {
						l = m
					}
				}
			}
			if l == nil {
				return fmt.Errorf("the leader is not among the running nodes")
			}
			return nil
		})
		return l
	}
	leave := func(n *logNode) {
		t.Helper()
		var errOut bytes.Buffer
		if code := run([]string{"leave", "-http-addr", n.admin}, io.Discard, &errOut); code != 0 {
			t.Fatalf("vipd leave on %s: exit %d: %s", n.name, code, errOut.String())
		}
		select {
		case code := <-n.done:
			if code != 0 {
				t.Errorf("%s exited %d after vipd leave", n.name, code)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not stop after vipd leave", n.name)
		}
		stopped[n] = true
	}

	// The leader leaves first (a transfer and a configuration change), then a follower, then the last node,
	// which has nobody to hand over to.
	running := append([]*logNode(nil), nodes...)
	for voters := 3; voters >= 1; voters-- {
		l := leader(running, voters)
		leave(l)
		for i, n := range running {
			if n == l {
				running = append(running[:i], running[i+1:]...)
				break
			}
		}
	}

	counts := map[string]int{}
	for _, n := range nodes {
		n.stderr.mu.Lock()
		out := n.buf.String()
		n.stderr.mu.Unlock()
		for i, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			where := fmt.Sprintf("%s line %d", n.name, i+1)
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("%s is not one JSON object (%v): %s", where, err, line)
				continue
			}
			if err := testutil.DuplicateJSONKeys(line); err != nil {
				t.Errorf("%s: %v: %s", where, err, line)
			}
			if verb := unformattedVerb(rec); verb != "" {
				t.Errorf("%s: printf verb left unformatted (%s): %s", where, verb, line)
			}
			if rec["level"] == "WARN" && strings.Contains(line, "cannot find peer") {
				t.Errorf("%s: a leadership transfer with nobody to transfer to: %s", where, line)
			}
			counts["lines"]++
			sub, _ := rec["subsystem"].(string)
			group, _ := rec["raft"].(map[string]any)
			switch {
			case strings.HasPrefix(sub, "raft") && group["servers"] != nil:
				if _, ok := group["servers"].(string); ok {
					counts["raft servers"]++
				}
			case strings.HasPrefix(sub, "raft") && (group["leader"] != nil || group["follower"] != nil):
				if s, _ := group["leader"].(string); strings.HasPrefix(s, "Node at ") {
					counts["raft state"]++
				}
				if s, _ := group["follower"].(string); strings.HasPrefix(s, "Node at ") {
					counts["raft state"]++
				}
			case sub == "memberlist":
				counts["memberlist"]++
			}
		}
	}
	t.Logf("%s: %d lines parsed; raft configuration lines %d, raft state lines %d, memberlist lines %d",
		mode, counts["lines"], counts["raft servers"], counts["raft state"], counts["memberlist"])
	// The defects lived in these lines: the test means nothing unless the run produced them.
	for _, k := range []string{"raft servers", "raft state", "memberlist"} {
		if counts[k] == 0 {
			t.Errorf("no %s line in the run: the run did not exercise what it checks", k)
		}
	}
}

// securityFlags returns each node's cluster security flags for mode: one shared key file, or a CA and a
// certificate per node made with vipd tls.
func securityFlags(t *testing.T, dir, mode string) func(node string) []string {
	t.Helper()
	if mode == "key" {
		key := filepath.Join(dir, "cluster.key")
		k := make([]byte, 32)
		for i := range k {
			k[i] = byte(i * 7)
		}
		if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return func(string) []string { return []string{"-encrypt-file", key} }
	}
	ca, caKey := filepath.Join(dir, "vipd-ca.pem"), filepath.Join(dir, "vipd-ca-key.pem")
	var errOut bytes.Buffer
	if code := run([]string{"tls", "ca", "create", "-dir", dir}, io.Discard, &errOut); code != 0 {
		t.Fatalf("vipd tls ca create: %s", errOut.String())
	}
	for i := 1; i <= 3; i++ {
		if code := run([]string{"tls", "cert", "create", "-dir", dir, "-node", fmt.Sprintf("lb%d", i), "-ca", ca, "-ca-key", caKey,
			"-ip", "127.0.0.1"}, io.Discard, &errOut); code != 0 {
			t.Fatalf("vipd tls cert create: %s", errOut.String())
		}
	}
	return func(node string) []string {
		return []string{"-tls-ca-file", ca, "-tls-cert-file", filepath.Join(dir, node+".pem"), "-tls-key-file", filepath.Join(dir, node+"-key.pem")}
	}
}

// udpTCPPort returns a loopback port free for both TCP and UDP, as gossip needs.
func udpTCPPort(t *testing.T) string {
	t.Helper()
	for range 50 {
		p := port(t)
		if u, err := net.ListenPacket("udp", "127.0.0.1:"+p); err == nil {
			u.Close()
			return p
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// verbRE matches a printf verb a formatter would have replaced ("%+v", "%d", "%.2f") or left as an error
// ("%!v(MISSING)").
var verbRE = regexp.MustCompile(`%[-+# 0]*[0-9]*(\.[0-9]+)?[vdsqxXfgetTpbco]|%!`)

// unformattedVerb returns the first printf verb in any string (key or value) of a decoded JSON value.
func unformattedVerb(v any) string {
	switch x := v.(type) {
	case string:
		return verbRE.FindString(x)
	case map[string]any:
		for k, e := range x {
			if s := verbRE.FindString(k); s != "" {
				return s
			}
			if s := unformattedVerb(e); s != "" {
				return s
			}
		}
	case []any:
		for _, e := range x {
			if s := unformattedVerb(e); s != "" {
				return s
			}
		}
	}
	return ""
}
