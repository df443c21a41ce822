// Command failoverbench is `make bench-failover`: it measures how fast and how cleanly the VIP moves between
// three vipd nodes, each in its own network namespace on one bridge, as seen by a client in a fourth namespace
// that connects to VIP:6443 every 10 ms (50 ms budget) and asks who-has VIP every 10 ms. For each fault on the
// leader (crash, graceful stop, partition from its peers, its backends down) it runs several trials, restoring
// the cluster between them, and prints median and max of the longest client outage, of fault → VIP answering
// from another node, and of the time two holders answered.
//
// It needs root (namespaces, veth, nft). Everything it creates carries a unique prefix and is removed on exit,
// also after an error or SIGINT/SIGTERM; the subnet 10.213.0.0/24 exists only inside those namespaces.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "backend":
			err = backendMain(os.Args[2:])
		case "observe":
			err = observeMain(os.Args[2:])
		case "burn":
			err = burnMain(os.Args[2:])
		default:
			os.Exit(run(os.Args[1:]))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "failoverbench:", os.Args[1]+":", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(nil))
}

func run(args []string) int {
	fs := flag.NewFlagSet("failoverbench", flag.ExitOnError)
	vipdBin := fs.String("vipd", "bin/vipd", "vipd binary")
	trials := fs.Int("trials", 10, "trials per scenario")
	partition := fs.Duration("partition", 5*time.Second, "how long the leader is cut off from its peers")
	fast := fs.String("fast", "30ms/30ms/20ms", "fast setting: raft heartbeat/election/lease; empty to skip")
	only := fs.String("only", "", "run only scenarios whose name contains this")
	keep := fs.Bool("keep-logs", false, "keep the temporary directory with every process's log")
	extra := fs.String("vipd-flags", "", "extra flags for every vipd agent, space-separated (e.g. \"-nice 0\")")
	secMode := fs.String("security", "key", "how the agents authenticate each other: key (as users run it), mtls, or insecure")
	soakFor := fs.Duration("soak", 0, "instead of the failover scenarios: steady state for this long with both cores saturated by busy loops; counts leader changes")
	fs.Parse(args)

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "failoverbench: needs root (network namespaces, veth, nft)")
		return 2
	}
	for _, tool := range []string{"ip", "nft", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "failoverbench: %s not found\n", tool)
			return 2
		}
	}
	vipd, err := filepath.Abs(*vipdBin)
	if err == nil {
		_, err = os.Stat(vipd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "failoverbench: vipd binary: %v (go build -o bin/vipd ./cmd/vipd)\n", err)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		return 1
	}
	settings := []raftSetting{{name: "default"}}
	if *fast != "" {
		var hb, el, le time.Duration
		var a, b, c string
		if n, _ := fmt.Sscanf(replaceSlash(*fast), "%s %s %s", &a, &b, &c); n == 3 {
			hb, _ = time.ParseDuration(a)
			el, _ = time.ParseDuration(b)
			le, _ = time.ParseDuration(c)
		}
		if hb <= 0 || el <= 0 || le <= 0 {
			fmt.Fprintf(os.Stderr, "failoverbench: -fast %q: want heartbeat/election/lease, e.g. 40ms/40ms/20ms\n", *fast)
			return 2
		}
		settings = append(settings, raftSetting{name: "fast", heartbeat: hb, election: el, lease: le})
	}

	dir, err := os.MkdirTemp("", "failoverbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		return 1
	}
	var idb [3]byte
	rand.Read(idb[:])
	t := &topo{prefix: "vfb" + hex.EncodeToString(idb[:]), nodes: []string{"n1", "n2", "n3"}, run: runCmd}
	ps := &procs{all: map[*proc]struct{}{}}

	cleanup := func() {
		ps.killAll()
		t.teardown()
	}
	defer func() {
		cleanup()
		if *keep {
			fmt.Println("logs kept in", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			cleanup()
			panic(r)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// Trials notice ctx within their window; if something hangs, still clean up.
		time.Sleep(10 * time.Second)
		cleanup()
		os.Exit(130)
	}()

	if err := t.build(); err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench: build namespaces:", err)
		return 1
	}
	obs, err := startObserver(ps, t, self, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		return 1
	}
	lo := &loWatch{}
	loStop := make(chan struct{})
	loDone := make(chan error, 1)
	go func() { loDone <- lo.run(loStop, t, 20*time.Millisecond) }()
	defer func() {
		close(loStop)
		<-loDone
	}()

	extraFlags = strings.Fields(*extra)
	sec := security{mode: *secMode, dir: dir}
	var ips []string
	for i := range t.nodes {
		ips = append(ips, t.nodeIP(i))
	}
	if err := sec.prepare(t.nodes, ips); err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		return 2
	}
	if *soakFor > 0 {
		return runSoak(ctx, t, ps, vipd, self, dir, sec, obs, lo, *soakFor)
	}
	fmt.Printf("failoverbench: 3 nodes + client in namespaces %s-*, security %s, probe every 10 ms (50 ms budget), %d trials per scenario\n", t.prefix, sec.mode, *trials)
	var tables []table
	for _, s := range settings {
		c := &cluster{t: t, ps: ps, vipdBin: vipd, self: self, dir: dir, setting: s, sec: sec}
		if err := c.start(); err != nil {
			fmt.Fprintln(os.Stderr, "failoverbench:", err)
			return 1
		}
		b := &bench{t: t, ps: ps, c: c, obs: obs, lo: lo}
		for _, sc := range scenarios(*partition) {
			if *only != "" && !contains(sc.name, *only) {
				continue
			}
			if s.name == "fast" && !(contains(sc.name, "crash") || contains(sc.name, "cut")) {
				continue // the fast setting is about Raft timeouts: crash and partition
			}
			tb := table{setting: s, scenario: sc.name}
			for i := range *trials {
				if ctx.Err() != nil {
					return 130
				}
				tr, err := b.runTrial(ctx, sc)
				if err != nil {
					tb.errors = append(tb.errors, fmt.Sprintf("trial %d: %v", i+1, err))
					fmt.Printf("  %-8s %-36s trial %2d: error: %v\n", s.name, sc.name, i+1, err)
					break // the cluster is not in a state further trials could trust
				}
				tb.trials = append(tb.trials, tr)
				fmt.Printf("  %-8s %-36s trial %2d: outage %s, new node %s, ARP two-MAC %s / overlap %s (%d MACs seen), lo two %s%s\n",
					s.name, sc.name, i+1, ms(tr.outage), ms(tr.toNewNode), ms(tr.arpTwo), ms(tr.arpOverlap), tr.macs, ms(tr.loTwo), note(tr.err))
			}
			tables = append(tables, tb)
		}
		c.stop()
	}
	printTables(os.Stdout, tables)
	return 0
}

// extraFlags are appended to every agent's command line (-vipd-flags).
var extraFlags []string

// runSoak is the stability measurement: default settings, steady state, both cores saturated.
func runSoak(ctx context.Context, t *topo, ps *procs, vipd, self, dir string, sec security, obs *observer, lo *loWatch, d time.Duration) int {
	c := &cluster{t: t, ps: ps, vipdBin: vipd, self: self, dir: dir, setting: raftSetting{name: "default"}, sec: sec}
	defer c.stop()
	if err := c.start(); err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		return 1
	}
	if _, err := c.waitStable(ctx, obs, lo, time.Second, 30*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		return 1
	}
	fmt.Printf("failoverbench: soak: %s of steady state, default settings, %d busy-loop processes saturating the CPU\n", d, runtime.NumCPU())
	res, err := soak(ctx, c, lo, self, d)
	if err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		return 1
	}
	for _, e := range res.events {
		fmt.Println("  ", e)
	}
	fmt.Printf("soak %s: %d samples of every node's status, %d leader changes, %d VIP holder changes\n",
		res.duration, res.samples, res.leaderChanges, res.holderChanges)
	if res.leaderChanges > 0 || res.holderChanges > 0 {
		return 1
	}
	return 0
}

func startObserver(ps *procs, t *topo, self, dir string) (*observer, error) {
	cmd := exec.Command("ip", "netns", "exec", t.clientNS(), self, "observe",
		"-addr", fmt.Sprintf("%s:%d", vipAddr, proxyPort), "-interval", "10ms", "-budget", "50ms",
		"-iface", "eth0", "-vip", vipAddr, "-ask-ip", arpAskAddr)
	logf, err := os.Create(filepath.Join(dir, "observer.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start observer: %w", err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.all[p] = struct{}{}
	ps.mu.Unlock()
	return &observer{in: in, out: bufio.NewReader(out), cmd: cmd}, nil
}

func replaceSlash(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == '/' {
			b[i] = ' '
		}
	}
	return string(b)
}

func note(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
