package packaging

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/vipd/vipd/agent"
	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip/viptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist and raft keep a few timers whose goroutines end shortly after Shutdown.
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

const (
	alertsFile    = "../docs/monitoring/vipd-alerts.yaml"
	dashboardFile = "../docs/monitoring/vipd-dashboard.json"
)

// TestMonitoringUsesExportedMetrics starts real agents (a -dev cluster holding a VIP through an in-memory
// kernel, and a proxy alone whose only backend is dead), drives them through the events the rules watch —
// connections, a backend that dies between checks, a failing check, a failing hook, a refused client — then
// scrapes /metrics and checks every metric name, label and label value the alert rules and the dashboard
// select on.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	refs := append(ruleRefs(t), dashboardRefs(t)...)
	if len(refs) < 40 {
		t.Fatalf("found only %d metric references in the rules and dashboard: is the parser broken?", len(refs))
	}
	scraped := scrapeScenario(t)

	var missing []string
	for _, r := range refs {
		if r.name == "up" { // Prometheus's own, per target
			continue
		}
		fam, ok := scraped[familyOf(r.name)]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (in %s)", r.name, r.where))
			continue
		}
		for label, value := range r.matchers {
			values, ok := fam[label]
			if !ok {
				t.Errorf("%s: %s has no label %q (labels: %v)", r.where, r.name, label, keys(fam))
				continue
			}
			if value != "" && !values[value] {
				t.Errorf("%s: %s{%s=%q}: no series has that value (values: %v)", r.where, r.name, label, value, keys(values))
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("the rules and dashboard use metrics the agent does not export:\n  %s\nexported: %v",
			strings.Join(slices.Compact(missing), "\n  "), keys(scraped))
	}
}

// A metricRef is one metric selector in a PromQL expression.
type metricRef struct {
	name     string
	matchers map[string]string // label -> value of an = matcher ("" for =~, != and !~)
	where    string
}

var (
	selectorRE = regexp.MustCompile(`\b((?:vipd|process|go)_[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"`)
)

// exprRefs finds the metric selectors of expr. Labels Prometheus attaches to every target (job, instance)
// are not the agent's and are not checked; values with a dashboard variable ($job) match anything.
func exprRefs(expr, where string) []metricRef {
	var out []metricRef
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		r := metricRef{name: m[1], matchers: map[string]string{}, where: where}
		for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			label, op, value := lm[1], lm[2], lm[3]
			if label == "job" || label == "instance" {
				continue
			}
			if op != "=" || strings.Contains(value, "$") {
				value = ""
			}
			r.matchers[label] = value
		}
		out = append(out, r)
	}
	return out
}

func ruleRefs(t *testing.T) []metricRef {
	t.Helper()
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []metricRef
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("%s: group %s has a rule without alert or expr", alertsFile, g.Name)
			}
			refs := exprRefs(r.Expr, "alert "+r.Alert)
			if len(refs) == 0 {
				t.Errorf("%s: alert %s selects no metric", alertsFile, r.Alert)
			}
			out = append(out, refs...)
		}
	}
	return out
}

func dashboardRefs(t *testing.T) []metricRef {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []metricRef
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for _, tg := range p.Targets {
			refs := exprRefs(tg.Expr, fmt.Sprintf("panel %q", p.Title))
			if len(refs) == 0 {
				t.Errorf("%s: panel %q: query %q selects no metric", dashboardFile, p.Title, tg.Expr)
			}
			out = append(out, refs...)
		}
	}
	for _, v := range dash.Templating.List {
		out = append(out, exprRefs(v.Definition, "variable $"+v.Name)...)
	}
	return out
}

// familyOf maps a histogram's series names to the family name.
func familyOf(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && base != "" {
			return base
		}
	}
	return name
}

// scraped maps metric family -> label -> values seen.
type scraped map[string]map[string]map[string]bool

// scrapeScenario runs the agents, drives them, and returns the union of their /metrics.
func scrapeScenario(t *testing.T) scraped {
	t.Helper()
	echo := echoServer(t)
	dies := echoServer(t) // healthy at its only check, gone before the connections
	resetter := resetServer(t)
	never := deadAddr(t)

	cfg := agent.Default()
	cfg.Dev = true
	cfg.Node = "lb1"
	cfg.Bind = "127.0.0.1"
	cfg.GossipPort, cfg.RaftPort = freePort(t), freePort(t)
	cfg.VIPs = []string{"192.0.2.50/24"}
	// A fixed port: a hand-over drain (on by default) needs the frontend's port before it listens.
	cfg.Listen, cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t)), "127.0.0.1:0"
	cfg.Backends = []string{echo.addr, dies.addr, resetter, never}
	// One check per backend (at most 1 s after start), so what the test does next is not undone by a check.
	cfg.CheckInterval, cfg.CheckTimeout = time.Hour, time.Second
	cfg.Rise, cfg.Fall = 1, 1
	cfg.OnAcquire = agent.HookCommand{Shell: "exit 3"} // a failing hook
	cfg.Nice = 0
	cfg.DrainTimeout = time.Second
	kernel := viptest.NewFakeKernel()
	a := startAgent(t, cfg, agent.Options{Kernel: kernel, Version: "test", Build: agent.BuildInfo{Version: "test", Commit: "test", GoVersion: "test"}})
	proxyAddr, adminAddr := a.Addrs()
	metricsURL := "http://" + adminAddr.String() + "/metrics"

	value := func(name string, labels ...string) float64 {
		return sampleValue(t, metricsURL, name, labels...)
	}
	testutil.WaitFor(t, 15*time.Second, "the dev node to hold the VIP and its hook to fail", func() bool {
		return value("vipd_vip_held") == 1 && value("vipd_vip_hook_failures_total", "hook", "acquire") >= 1
	})
	testutil.WaitFor(t, 10*time.Second, "the first check of every backend", func() bool {
		return value("vipd_backend_health_state", "backend", echo.addr) == 1 &&
			value("vipd_backend_health_state", "backend", dies.addr) == 1 &&
			value("vipd_backend_health_state", "backend", resetter) == 1 &&
			value("vipd_backend_health_state", "backend", never) == 0
	})
	dies.close()
	// Round robin over echo, dies and resetter: some dials fail (retried on the next backend), some
	// connections are reset by the backend mid-stream.
	testutil.WaitFor(t, 20*time.Second, "dial and copy errors", func() bool {
		roundTrip(proxyAddr.String())
		return value("vipd_proxy_dial_errors_total", "backend", dies.addr) >= 1 &&
			value("vipd_proxy_copy_errors_total", "backend", resetter) >= 1
	})

	// A proxy alone whose only backend never answers: clients are refused.
	lone := agent.Default()
	lone.Listen, lone.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	lone.Backends = []string{deadAddr(t)}
	lone.CheckInterval, lone.CheckTimeout = time.Hour, time.Second
	lone.Nice = 0
	lone.DrainTimeout = time.Second
	b := startAgent(t, lone, agent.Options{Version: "test"})
	loneProxy, loneAdmin := b.Addrs()
	loneURL := "http://" + loneAdmin.String() + "/metrics"
	testutil.WaitFor(t, 10*time.Second, "a refused client", func() bool {
		roundTrip(loneProxy.String())
		return sampleValue(t, loneURL, "vipd_proxy_refused_total", "reason", "no_backend") >= 1
	})

	all := scraped{}
	for _, u := range []string{metricsURL, loneURL} {
		for fam, labels := range scrape(t, u) {
			if all[fam] == nil {
				all[fam] = map[string]map[string]bool{}
			}
			for l, vs := range labels {
				if all[fam][l] == nil {
					all[fam][l] = map[string]bool{}
				}
				for v := range vs {
					all[fam][l][v] = true
				}
			}
		}
	}
	return all
}

func startAgent(t *testing.T, cfg agent.Config, opts agent.Options) *agent.Agent {
	t.Helper()
	opts.Logger = testutil.NewLogSink(t).Logger(0)
	a, err := agent.New(cfg, opts)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("agent Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop within 20 s")
		}
	})
	select {
	case <-a.Ready():
	case err := <-errc:
		t.Fatalf("agent stopped at start: %v", err)
	}
	return a
}

// roundTrip sends a line through the proxy and reads until the backend is done; errors are the point of some
// of the backends, so they are ignored.
func roundTrip(addr string) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.WriteString(c, "ping\n")
	_, _ = bufio.NewReader(c).ReadString('\n')
}

type server struct {
	addr  string
	close func()
}

// echoServer echoes one line per connection.
func echoServer(t *testing.T) *server {
	t.Helper()
	return serve(t, func(c *net.TCPConn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, _ = io.WriteString(c, line)
		}
	})
}

// resetServer accepts, reads what the client sent and resets the connection (SO_LINGER 0), so the proxy's
// copy from the backend fails.
func resetServer(t *testing.T) string {
	t.Helper()
	return serve(t, func(c *net.TCPConn) {
		_, _ = bufio.NewReader(c).ReadString('\n')
		_ = c.SetLinger(0)
	}).addr
}

// serve runs handle for each connection (then closes it) until the returned server is closed or the test ends.
func serve(t *testing.T, handle func(*net.TCPConn)) *server {
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
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			handle(c.(*net.TCPConn))
			c.Close()
		}
	}()
	closed := false
	s := &server{addr: ln.Addr().String(), close: func() {
		if !closed {
			closed = true
			ln.Close()
			<-done
		}
	}}
	t.Cleanup(s.close)
	return s
}

// deadAddr is a loopback port nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
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

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func fetchSamples(t *testing.T, url string) []sample {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			s.name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			for _, m := range labelRE.FindAllStringSubmatch(rest[:end], -1) {
				s.labels[m[1]] = m[2]
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			t.Fatalf("scrape %s: no value in %q", url, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("scrape %s: value of %q: %v", url, line, err)
		}
		s.value = v
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return out
}

// sampleValue sums the samples of name whose labels include the given label pairs; 0 if none.
func sampleValue(t *testing.T, url, name string, labelPairs ...string) float64 {
	t.Helper()
	var sum float64
	for _, s := range fetchSamples(t, url) {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labelPairs); i += 2 {
			match = match && s.labels[labelPairs[i]] == labelPairs[i+1]
		}
		if match {
			sum += s.value
		}
	}
	return sum
}

func scrape(t *testing.T, url string) scraped {
	t.Helper()
	out := scraped{}
	for _, s := range fetchSamples(t, url) {
		fam := familyOf(s.name)
		if out[fam] == nil {
			out[fam] = map[string]map[string]bool{}
		}
		for l, v := range s.labels {
			if out[fam][l] == nil {
				out[fam][l] = map[string]bool{}
			}
			out[fam][l][v] = true
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
