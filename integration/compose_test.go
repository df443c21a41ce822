//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// projectPrefix names every compose project this suite creates, so that
// leftovers of a run killed by `go test -timeout` can be found and removed.
const projectPrefix = "vipdit"

// env is one docker-compose project: its name, subnets and helpers to act on
// its containers from the host.
type env struct {
	t          *testing.T
	root       string // repository root (holds docker-compose.yml and bin/)
	project    string
	clientNet  string // first three octets, e.g. "172.28.0"
	clusterNet string
	garp       bool
	macs       map[string]string // service -> MAC on the client network, cleared on recreate
}

// lbs and apis are the compose service names.
var lbs = []string{"lb1", "lb2", "lb3"}

func newEnv(t *testing.T) *env {
	t.Helper()
	for _, tool := range []string{"docker", "docker-compose", "nsenter", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: the compose suite needs Docker, docker-compose, nsenter and iptables on the host", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the compose suite needs root (raw ARP socket, nsenter)")
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
	e := &env{t: t, root: root, garp: true, macs: map[string]string{},
		project: fmt.Sprintf("%s%dx%s", projectPrefix, time.Now().Unix(), hex.EncodeToString(b))}
	e.removeStaleProjects()
	e.clientNet, e.clusterNet = e.freeSubnets()
	t.Logf("compose project %s, client %s.0/24, cluster %s.0/24", e.project, e.clientNet, e.clusterNet)
	return e
}

// environ is the environment docker-compose sees: it picks the image tag,
// the subnets and whether vipd sends gratuitous ARP.
func (e *env) environ() []string {
	return append(os.Environ(),
		"VIPD_TAG="+e.project,
		"VIPD_CLIENT_NET="+e.clientNet,
		"VIPD_CLUSTER_NET="+e.clusterNet,
		"VIPD_GARP="+strconv.FormatBool(e.garp),
		"COMPOSE_DOCKER_CLI_BUILD=0", "DOCKER_BUILDKIT=0",
	)
}

func (e *env) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = e.root
	cmd.Env = e.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func (e *env) compose(timeout time.Duration, args ...string) (string, error) {
	return e.run(timeout, "docker-compose", append([]string{"-p", e.project, "-f", filepath.Join(e.root, "docker-compose.yml")}, args...)...)
}

func (e *env) mustCompose(timeout time.Duration, args ...string) string {
	e.t.Helper()
	out, err := e.compose(timeout, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) docker(args ...string) (string, error) { return e.run(time.Minute, "docker", args...) }

func (e *env) mustDocker(args ...string) string {
	e.t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// container is compose 1.29's name for a service's only container.
func (e *env) container(svc string) string { return e.project + "_" + svc + "_1" }

func (e *env) vip() netip.Addr { return netip.MustParseAddr(e.clientNet + ".50") }

func (e *env) lbIP(svc string) string { return e.clientNet + ".1" + svc[len(svc)-1:] }

func (e *env) apiIP(svc string) string { return e.clientNet + ".2" + svc[len(svc)-1:] }

// build compiles the static binaries the images copy (as `make build` does)
// and builds the images offline.
func (e *env) build() {
	e.t.Helper()
	for _, b := range []struct{ out, pkg string }{{"bin/vipd", "./cmd/vipd"}, {"bin/apiserver", "./integration/apiserver"}} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", b.out, b.pkg)
		cmd.Dir = e.root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			e.t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	e.mustCompose(5*time.Minute, "build", "api1", "lb1")
}

// down removes everything the project created: containers, networks,
// volumes and its images (tagged with the project name, used by nobody else).
func (e *env) down() {
	if out, err := e.compose(3*time.Minute, "down", "-v", "--rmi", "all", "--remove-orphans", "-t", "5"); err != nil {
		e.t.Logf("cleanup: %v\n%s", err, out)
	}
}

// logs keeps the vipd logs of a failed run in the test output.
func (e *env) logs() {
	out, _ := e.compose(time.Minute, "logs", "--no-color", "--tail", "300", "lb1", "lb2", "lb3")
	e.t.Logf("vipd logs (last 300 lines per node):\n%s", out)
}

var projectRE = regexp.MustCompile(`^` + projectPrefix + `(\d+)x[0-9a-f]+$`)

// removeStaleProjects downs projects of this suite older than 30 minutes:
// runs killed by the test timeout, whose t.Cleanup never ran. Younger ones
// may belong to a run in progress and are left alone.
func (e *env) removeStaleProjects() {
	out, err := e.docker("ps", "-a", "--format", `{{.Label "com.docker.compose.project"}}`)
	if err != nil {
		e.t.Logf("list containers: %v", err)
		return
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(out) {
		m := projectRE.FindStringSubmatch(p)
		if m == nil || seen[p] {
			continue
		}
		seen[p] = true
		started, _ := strconv.ParseInt(m[1], 10, 64)
		if time.Since(time.Unix(started, 0)) < 30*time.Minute {
			continue
		}
		e.t.Logf("removing stale compose project %s", p)
		old := &env{t: e.t, root: e.root, project: p, clientNet: "172.28.0", clusterNet: "172.29.0"}
		old.down()
	}
}

// freeSubnets picks a pair of /24s that no Docker network uses yet, so the
// suite runs beside the demo or another run.
func (e *env) freeSubnets() (client, cluster string) {
	e.t.Helper()
	ids := strings.Fields(e.mustDocker("network", "ls", "-q"))
	var used []netip.Prefix
	if len(ids) > 0 {
		out := e.mustDocker(append([]string{"network", "inspect", "-f", `{{range .IPAM.Config}}{{.Subnet}} {{end}}`}, ids...)...)
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
	e.t.Fatal("no free pair of /24 subnets in 172.28/16 and 172.29/16")
	return "", ""
}

// pid is the host PID of the container's init, for nsenter.
func (e *env) pid(svc string) string {
	return e.mustDocker("inspect", "-f", "{{.State.Pid}}", e.container(svc))
}

// netns runs a host command (iptables) inside the container's network
// namespace: the FROM scratch images have no tools of their own.
func (e *env) netns(svc string, args ...string) error {
	_, err := e.run(time.Minute, "nsenter", append([]string{"-t", e.pid(svc), "-n", "--"}, args...)...)
	return err
}

// mac returns the container's MAC on the client network.
func (e *env) mac(svc string) string {
	e.t.Helper()
	if m, ok := e.macs[svc]; ok {
		return m
	}
	m := e.mustDocker("inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).MacAddress}}`, e.project+"_client"), e.container(svc))
	e.macs[svc] = m
	return m
}

// nodeOfMAC names the lb whose MAC this is, or returns the MAC itself.
func (e *env) nodeOfMAC(mac string) string {
	for _, s := range lbs {
		if e.mac(s) == mac {
			return s
		}
	}
	return mac
}

// bridge is the host interface of the client network.
func (e *env) bridge() string {
	id := e.mustDocker("network", "inspect", "-f", "{{.Id}}", e.project+"_client")
	return "br-" + id[:12]
}
