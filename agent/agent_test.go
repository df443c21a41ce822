package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakGrace is how long TestMain lets goroutines of stopped components end before it calls them leaked.
// memberlist's probeNode waits on an ack timer of one probe interval (500 ms in package cluster) that
// Shutdown does not stop, so after a real-cluster test it lives on for up to that long; goleak's own retries
// give up after about 0.4 s. A goroutine that is still there after the grace is a leak.
const leakGrace = 3 * time.Second

// agentNice is the agent's default scheduling priority (vipd agent -nice). The real-Raft tests run as the
// agent does: at nice 0, a neighbour saturating the shared cores (another go build) stalls the process for
// longer than the Raft lease, the leader steps down for nothing and a "the VIP stays put" check fails on a
// Raft election that vipd would not have had (cluster/config.go records 36 such step-downs in 5 saturated
// minutes at nice 0).
const agentNice = -10

func TestMain(m *testing.M) {
	if err := setNice(agentNice); err != nil {
		fmt.Fprintf(os.Stderr, "run at the agent's nice %d (the real-Raft tests may see spurious elections): %v\n",
			agentNice, err)
	}
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakGrace)
		for err := goleak.Find(goleak.IgnoreTopFunction("time.Sleep")); err != nil; err = goleak.Find(goleak.IgnoreTopFunction("time.Sleep")) {
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: goroutines left %v after the tests: %v\n", leakGrace, err)
				code = 1
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nameServer is a backend that writes its name to every connection and closes it.
func nameServer(t *testing.T, name string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startAgent runs an agent until the test ends and returns it once its listeners are bound.
func startAgent(t *testing.T, cfg Config, opts Options) *Agent {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	select {
	case <-a.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	return a
}

// post sends a JSON body as the vipd CLI does, with extra headers, and returns the status code.
func post(t *testing.T, url, body string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func readAll(t *testing.T, addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func proxyConfig(backends ...string) Config {
	cfg := Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Backends = backends
	cfg.CheckInterval = 30 * time.Millisecond
	cfg.CheckTimeout = 200 * time.Millisecond
	cfg.Rise, cfg.Fall = 1, 2
	cfg.DrainTimeout = time.Second
	return cfg
}

func TestProxyOnlyAgentServesAndReportsHealth(t *testing.T) {
	b1, b2 := nameServer(t, "b1"), nameServer(t, "b2")
	a := startAgent(t, proxyConfig(b1.Addr().String(), b2.Addr().String()), Options{Version: "test"})
	proxyAddr, adminAddr := a.Addrs()
	admin := "http://" + adminAddr.String()

	waitFor(t, 5*time.Second, "/healthz to report both backends", func() bool {
		code, body := get(t, admin+"/healthz")
		return code == http.StatusOK && strings.Contains(body, "2/2")
	})
	seen := map[string]int{}
	for range 6 {
		got, err := readAll(t, proxyAddr.String())
		if err != nil {
			t.Fatalf("through the proxy: %v", err)
		}
		seen[got]++
	}
	if seen["b1"] == 0 || seen["b2"] == 0 {
		t.Errorf("connections were not spread over both backends: %v", seen)
	}

	code, body := get(t, admin+"/v1/backends")
	var br BackendsResponse
	if err := json.Unmarshal([]byte(body), &br); code != 200 || err != nil {
		t.Fatalf("/v1/backends: %d %v %s", code, err, body)
	}
	if len(br.Frontends) != 1 || len(br.Frontends[0].Backends) != 2 || br.Frontends[0].Backends[0].State != "healthy" || br.Frontends[0].Backends[0].Total == 0 {
		t.Errorf("/v1/backends = %+v", br.Frontends)
	}
	_, metrics := get(t, admin+"/metrics")
	for _, want := range []string{"vipd_proxy_connections_total", "vipd_backend_health_state", "vipd_backend_check_duration_seconds"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var mr MembersResponse
	_, body = get(t, admin+"/v1/members")
	if err := json.Unmarshal([]byte(body), &mr); err != nil || len(mr.Members) != 1 || !mr.Members[0].Healthy {
		t.Errorf("/v1/members = %s", body)
	}

	// Both backends gone: the node turns unhealthy and says why; new connections are refused at once.
	b1.Close()
	b2.Close()
	waitFor(t, 5*time.Second, "/healthz to answer 503", func() bool {
		code, _ := get(t, admin+"/healthz")
		return code == http.StatusServiceUnavailable
	})
	_, body = get(t, admin+"/healthz")
	if !strings.Contains(body, "0 of 2") {
		t.Errorf("/healthz body %q does not say how many backends are healthy", body)
	}
	start := time.Now()
	if got, err := readAll(t, proxyAddr.String()); err == nil && got != "" {
		t.Errorf("got %q through a proxy with no healthy backend", got)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refusal took %s; it must be immediate", d)
	}
}

func TestAdminRejectsWritesByGET(t *testing.T) {
	b := nameServer(t, "b")
	a := startAgent(t, proxyConfig(b.Addr().String()), Options{})
	_, adminAddr := a.Addrs()
	code, _ := get(t, "http://"+adminAddr.String()+"/v1/leave")
	if code != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/leave = %d, want 405: a scrape must never make a node leave", code)
	}
	if code := post(t, "http://"+adminAddr.String()+"/v1/force-leave", `{"node":"x"}`, nil); code != http.StatusConflict {
		t.Errorf("force-leave without a cluster = %d, want 409", code)
	}
}

func TestListenerInUseFailsStart(t *testing.T) {
	b := nameServer(t, "b")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := proxyConfig(b.Addr().String())
	cfg.Listen = busy.Addr().String()
	a, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "-listen") {
		t.Errorf("Run on a busy port = %v, want an error naming -listen", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
