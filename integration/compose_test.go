//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// projectPrefix names every compose project this suite creates, so that
// leftovers of a run killed by `go test -timeout` can be found and removed.
const projectPrefix = "vipdit"

// staleAfter is the age beyond which a project of this suite cannot belong
// to a run in progress: longer than the -timeout of `make integration`.
const staleAfter = 20 * time.Minute

// images are the repositories of the compose file, and the previous
// release's agent that TestRollingUpgrade builds; the suite tags them with
// its project name, so removing them touches nobody else's images, and a
// killed run's are found by that tag too.
var images = []string{"vipd-agent", "vipd-apiserver", prevImage}

// lbs are the vipd compose services.
var lbs = []string{"lb1", "lb2", "lb3"}

// env is one docker-compose project: its name, subnets and helpers to act on
// its containers from the host. It holds no *testing.T: helpers that must
// succeed take the t of the (sub)test calling them.
type env struct {
	root       string // repository root (holds docker-compose.yml)
	context    string // private docker build context: bin/ and docker/ only
	keyDir     string // holds cluster.key (0600), mounted into every vipd container
	project    string
	clientNet  string // first three octets, e.g. "172.28.1"
	clusterNet string
	garp       bool
	drain      bool // -handover-drain
	// version, when set, is stamped into the vipd binary as `make build`
	// does (vipd version, vipd members), so a test can tell builds apart.
	version string

	mu     sync.Mutex
	macs   map[string]string // service -> MAC on the client network; cleared on recreate
	halted atomic.Bool
}

// requireEnv is set by `make integration`: there a missing prerequisite
// fails the run instead of skipping it, so CI cannot pass without the suite.
const requireEnv = "VIPD_IT_REQUIRE"

func newEnv(t *testing.T) *env {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(requireEnv) != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	for _, tool := range []string{"docker", "docker-compose", "nsenter", "iptables", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing("%s not found in PATH: the compose suite needs go, Docker, docker-compose (1.29), nsenter (util-linux) and iptables on the host", tool)
		}
	}
	if os.Geteuid() != 0 {
		missing("the compose suite needs root (raw ARP socket on the bridge, nsenter into containers)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing("Docker daemon not reachable: %v: %s", err, bytes.TrimSpace(out))
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(wd)
	if _, err := os.Stat(filepath.Join(root, "docker-compose.yml")); err != nil {
		t.Fatalf("docker-compose.yml not found above %s: %v", wd, err)
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	e := &env{root: root, context: t.TempDir(), keyDir: t.TempDir(), garp: true, drain: true, macs: map[string]string{},
		project: fmt.Sprintf("%s%dx%s", projectPrefix, time.Now().Unix(), hex.EncodeToString(b))}
	e.writeKey(t)
	e.removeStaleProjects(t)
	e.clientNet, e.clusterNet = e.freeSubnets(t)
	t.Logf("compose project %s, client %s.0/24 (VIP %s), cluster %s.0/24", e.project, e.clientNet, e.vip(), e.clusterNet)
	return e
}

// writeKey makes the run's cluster key: the nodes authenticate Raft and gossip with it, as users' do.
func (e *env) writeKey(t *testing.T) {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.keyDir, "cluster.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// environ is the environment docker-compose sees: it picks the image tag,
// the build context, the subnets and whether vipd sends gratuitous ARP.
func (e *env) environ() []string {
	return append(os.Environ(),
		"VIPD_TAG="+e.project,
		"VIPD_BUILD_CONTEXT="+e.context,
		"VIPD_CLIENT_NET="+e.clientNet,
		"VIPD_CLUSTER_NET="+e.clusterNet,
		"VIPD_GARP="+strconv.FormatBool(e.garp),
		"VIPD_HANDOVER_DRAIN="+strconv.FormatBool(e.drain),
		"VIPD_KEY_DIR="+e.keyDir,
		"COMPOSE_DOCKER_CLI_BUILD=0", "DOCKER_BUILDKIT=0",
	)
}

// errHalted is returned by run once halt was called: a test goroutine still
// running must not start containers while the project is being removed.
var errHalted = errors.New("the suite is stopping: no more docker commands")

// halt refuses every later run; only down's own commands still execute.
func (e *env) halt() { e.halted.Store(true) }

// run runs a host command with a deadline; the error carries its output.
func (e *env) run(timeout time.Duration, name string, args ...string) (string, error) {
	if e.halted.Load() {
		return "", errHalted
	}
	return e.exec(timeout, name, args...)
}

func (e *env) exec(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = e.root
	cmd.Env = e.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func (e *env) compose(timeout time.Duration, args ...string) (string, error) {
	return e.run(timeout, "docker-compose", append([]string{"-p", e.project, "-f", filepath.Join(e.root, "docker-compose.yml")}, args...)...)
}

func (e *env) mustCompose(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := e.compose(timeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) docker(args ...string) (string, error) {
	out, err := e.run(time.Minute, "docker", args...)
	return strings.TrimSpace(out), err
}

func (e *env) mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// container is compose 1.29's name for a service's only container.
func (e *env) container(svc string) string { return e.project + "_" + svc + "_1" }

func (e *env) vip() netip.Addr { return netip.MustParseAddr(e.clientNet + ".50") }

func (e *env) lbIP(svc string) string { return e.clientNet + ".1" + svc[len(svc)-1:] }

func (e *env) apiIP(svc string) string { return e.clientNet + ".2" + svc[len(svc)-1:] }

// state is the container's Docker state: running, paused, exited, ...
func (e *env) state(svc string) string {
	s, err := e.docker("inspect", "-f", "{{.State.Status}}", e.container(svc))
	if err != nil {
		return "unknown"
	}
	return s
}

// build compiles the static binaries the images copy, with the flags of
// `make build`, into a private build context, and builds the images from it
// offline. The private context keeps a concurrent `go build -o bin/vipd` in
// the checkout (a dynamically linked one would not start FROM scratch) out of
// the images, and this run's binaries out of bin/.
func (e *env) build(t *testing.T) {
	t.Helper()
	for _, b := range []struct{ out, pkg string }{{"bin/vipd", "./cmd/vipd"}, {"bin/apiserver", "./integration/apiserver"}} {
		ldflags := "-s -w"
		if e.version != "" {
			ldflags += " -X main.version=" + e.version
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(e.context, b.out), b.pkg)
		cmd.Dir = e.root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	if err := os.MkdirAll(filepath.Join(e.context, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vipd.Dockerfile", "apiserver.Dockerfile"} {
		b, err := os.ReadFile(filepath.Join(e.root, "docker", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.context, "docker", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// One service per image: lb2, lb3 and api2, api3 share them.
	e.mustCompose(t, 5*time.Minute, "build", "-q", "api1", "lb1")
}

// down removes everything the project created: containers, networks,
// volumes and its images (tagged with the project name, used by nobody
// else), then checks that nothing is left. It returns what went wrong.
func (e *env) down() []string {
	var problems []string
	composeArgs := []string{"-p", e.project, "-f", filepath.Join(e.root, "docker-compose.yml")}
	for attempt := 1; attempt <= 3; attempt++ {
		problems = nil
		if _, err := e.exec(3*time.Minute, "docker-compose", append(composeArgs, "down", "-v", "--remove-orphans", "-t", "5")...); err != nil {
			problems = append(problems, err.Error())
		}
		for _, img := range images {
			if _, err := e.exec(time.Minute, "docker", "image", "inspect", img+":"+e.project); err == nil {
				if _, err := e.exec(time.Minute, "docker", "rmi", img+":"+e.project); err != nil {
					problems = append(problems, err.Error())
				}
			}
		}
		left := e.leftovers()
		if len(left) == 0 {
			return problems
		}
		// A command in flight when down started (docker start) can bring a
		// container back: try again.
		problems = append(problems, fmt.Sprintf("left behind after attempt %d: %s", attempt, strings.Join(left, ", ")))
		time.Sleep(2 * time.Second)
	}
	return problems
}

// leftovers lists the containers, networks and images of the project.
func (e *env) leftovers() []string {
	var left []string
	label := "label=com.docker.compose.project=" + e.project
	list := func(args ...string) string {
		out, _ := e.exec(time.Minute, "docker", args...)
		return strings.TrimSpace(out)
	}
	if out := list("ps", "-a", "--filter", label, "--format", "container {{.Names}}"); out != "" {
		left = append(left, strings.Split(out, "\n")...)
	}
	if out := list("network", "ls", "--filter", label, "--format", "network {{.Name}}"); out != "" {
		left = append(left, strings.Split(out, "\n")...)
	}
	for _, img := range images {
		if out := list("images", "-q", img+":"+e.project); out != "" {
			left = append(left, "image "+img+":"+e.project)
		}
	}
	return left
}

var projectRE = regexp.MustCompile(`^` + projectPrefix + `(\d+)x[0-9a-f]+$`)

// removeStaleProjects removes projects of this suite older than staleAfter:
// runs killed by the test timeout or a signal, whose cleanup never ran.
// Younger ones may belong to a run in progress and are left alone.
func (e *env) removeStaleProjects(t *testing.T) {
	var names []string
	for _, args := range [][]string{
		{"ps", "-a", "--format", `{{.Label "com.docker.compose.project"}}`},
		{"network", "ls", "--format", `{{.Label "com.docker.compose.project"}}`},
		{"images", "--format", "{{.Tag}}"},
	} {
		out, err := e.docker(args...)
		if err != nil {
			t.Logf("look for stale projects: %v", err)
			return
		}
		names = append(names, strings.Fields(out)...)
	}
	seen := map[string]bool{}
	for _, p := range names {
		m := projectRE.FindStringSubmatch(p)
		if m == nil || seen[p] {
			continue
		}
		seen[p] = true
		started, _ := strconv.ParseInt(m[1], 10, 64)
		if time.Since(time.Unix(started, 0)) < staleAfter {
			continue
		}
		t.Logf("removing stale compose project %s", p)
		old := &env{root: e.root, context: e.context, project: p, clientNet: "172.28.0", clusterNet: "172.29.0", macs: map[string]string{}}
		for _, p := range old.down() {
			t.Logf("remove stale project: %s", p)
		}
	}
}

// freeSubnets picks a pair of /24s that no Docker network uses yet, so the
// suite runs beside the demo or another run.
func (e *env) freeSubnets(t *testing.T) (client, cluster string) {
	t.Helper()
	ids := strings.Fields(e.mustDocker(t, "network", "ls", "-q"))
	var used []netip.Prefix
	if len(ids) > 0 {
		out := e.mustDocker(t, append([]string{"network", "inspect", "-f", `{{range .IPAM.Config}}{{.Subnet}} {{end}}`}, ids...)...)
		for _, s := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(s); err == nil {
				used = append(used, p)
			}
		}
	}
	free := func(p netip.Prefix) bool {
		for _, u := range used {
			if u.Overlaps(p) {
				return false
			}
		}
		return true
	}
	for i := 0; i < 16; i++ {
		c, k := fmt.Sprintf("172.28.%d", 16*i+1), fmt.Sprintf("172.29.%d", 16*i+1)
		if free(netip.MustParsePrefix(c+".0/24")) && free(netip.MustParsePrefix(k+".0/24")) {
			return c, k
		}
	}
	t.Fatal("no free pair of /24 subnets in 172.28/16 and 172.29/16")
	return "", ""
}

// netns runs a host command (iptables) inside the container's network
// namespace: the FROM scratch images have no tools of their own.
func (e *env) netns(svc string, args ...string) error {
	pid, err := e.docker("inspect", "-f", "{{.State.Pid}}", e.container(svc))
	if err != nil {
		return err
	}
	if pid == "0" {
		return fmt.Errorf("%s is not running", svc)
	}
	_, err = e.run(time.Minute, "nsenter", append([]string{"-t", pid, "-n", "--"}, args...)...)
	return err
}

// mac returns the container's MAC on the client network.
func (e *env) mac(t *testing.T, svc string) string {
	t.Helper()
	e.mu.Lock()
	m, ok := e.macs[svc]
	e.mu.Unlock()
	if ok {
		return m
	}
	m = e.mustDocker(t, "inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).MacAddress}}`, e.project+"_client"), e.container(svc))
	e.mu.Lock()
	e.macs[svc] = m
	e.mu.Unlock()
	return m
}

// forgetMACs drops the cached MACs after containers were recreated.
func (e *env) forgetMACs() {
	e.mu.Lock()
	e.macs = map[string]string{}
	e.mu.Unlock()
}

// nodeOfMAC names the lb whose MAC this is, or returns the MAC itself ("" for "").
func (e *env) nodeOfMAC(mac string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for s, m := range e.macs {
		if m == mac {
			return s
		}
	}
	return mac
}

// bridge is the host interface of the client network.
func (e *env) bridge(t *testing.T) string {
	t.Helper()
	id := e.mustDocker(t, "network", "inspect", "-f", "{{.Id}}", e.project+"_client")
	return "br-" + id[:12]
}
