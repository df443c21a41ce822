// Command proxybench is `make bench-proxy`: a loopback benchmark of vipd's proxy beside a direct connection to
// the backend and HAProxy (and, with -vipd-base, an older vipd binary), with the proxy under test pinned to one
// CPU and the load generator and backends to another. Tests: bulk throughput and CPU per GB; short connections
// from 64 closed-loop clients on one CPU and on two (rate2: the proxy gets the load's CPU too, HAProxy runs
// nbthread 2); latency and CPU per connection at a fixed 1k conn/s; the idle-connection footprint; a reconnect
// storm (8,000 clients within 100 ms, as after a VIP move). It prints one table of medians over -reps
// repetitions, the vipd/haproxy ratios (medians of per-repetition ratios) and the targets of issues 2 and 13.
//
// Every measurement gets a fresh proxy process, so one test's leftovers (heap, pools, TIME_WAIT) do not flatter
// or penalise the next; every loop is bounded in time; every child process is killed when the harness exits.
// As root it runs in a private network namespace, whose net.core.somaxconn (-somaxconn) is every target's
// listen queue.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

type options struct {
	vipd, vipdBase string
	dur            time.Duration
	reps           int
	streams        int
	workers        int
	perSec         int
	idle           int
	storm          int
	stormWindow    time.Duration
	somaxconn      int
	backends       int
	proxyCPU       int
	loadCPU        int
	only, tests    string
}

func main() {
	var o options
	flag.StringVar(&o.vipd, "vipd", "bin/vipd", "vipd binary to benchmark")
	flag.StringVar(&o.vipdBase, "vipd-base", "", "a second vipd binary (e.g. the last release) measured beside it as vipd-base")
	flag.DurationVar(&o.dur, "duration", 5*time.Second, "length of each throughput, rate and latency measurement")
	flag.IntVar(&o.reps, "reps", 1, "repetitions of every test; the table shows medians, and the median of the per-repetition vipd/haproxy ratios")
	flag.IntVar(&o.streams, "streams", 4, "parallel bulk streams")
	flag.IntVar(&o.workers, "workers", 64, "concurrent closed-loop clients in the short-connection tests")
	flag.IntVar(&o.perSec, "rate", 1000, "connections per second in the open-loop latency test")
	flag.IntVar(&o.idle, "idle", 9000, "idle connections held through each target")
	flag.IntVar(&o.storm, "storm", 8000, "clients in the reconnect storm (each holds its connection)")
	flag.DurationVar(&o.stormWindow, "storm-window", 100*time.Millisecond, "the storm's clients connect evenly within this window")
	flag.IntVar(&o.somaxconn, "somaxconn", 4096, "net.core.somaxconn in the private network namespace (the listen queue of every target); 0 leaves it")
	flag.IntVar(&o.backends, "backends", 3, "backend servers behind the proxies")
	flag.IntVar(&o.proxyCPU, "proxy-cpu", 0, "CPU the proxy under test is pinned to (two-CPU tests add -load-cpu)")
	flag.IntVar(&o.loadCPU, "load-cpu", 1, "CPU the load generator and backends are pinned to")
	flag.StringVar(&o.only, "only", "direct,vipd,vipd-base,haproxy", "comma-separated targets to run")
	flag.StringVar(&o.tests, "tests", "bulk,rate,latency,idle,storm,rate2", "comma-separated tests to run (rate2: short connections with the proxy on two CPUs)")
	netns := flag.Bool("netns", true, "as root, run in a private network namespace (own loopback, no conntrack)")
	flag.Parse()

	if *netns {
		if code, launcher := inPrivateNetns(); launcher {
			os.Exit(code)
		}
	}
	os.Exit(run(o))
}

func run(o options) (code int) {
	kids := newChildren()
	defer kids.killAll()
	defer func() {
		if r := recover(); r != nil {
			kids.killAll()
			panic(r)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		// Loops notice ctx within a few seconds; if something is stuck anyway, do not leave children behind.
		<-ctx.Done()
		time.Sleep(5 * time.Second)
		kids.killAll()
		fmt.Fprintln(os.Stderr, "proxybench: interrupted")
		os.Exit(130)
	}()

	limit, err := raiseNoFile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		return 1
	}
	held := max(o.idle, o.storm)
	if need := 2*held + 500; uint64(need) > limit {
		fmt.Fprintf(os.Stderr, "proxybench: -idle %d / -storm %d need about %d descriptors in the harness; the limit is %d\n", o.idle, o.storm, need, limit)
		return 2
	}
	if o.somaxconn > 0 {
		if os.Getenv(envInNetns) == "" {
			fmt.Fprintln(os.Stderr, "proxybench: not in a private network namespace: net.core.somaxconn left as it is")
		} else if err := setSysctl("net/core/somaxconn", o.somaxconn); err != nil {
			fmt.Fprintln(os.Stderr, "proxybench: set somaxconn:", err)
			return 1
		}
	}
	somaxconn, _ := sysctlInt("net/core/somaxconn")
	if runtime.NumCPU() < 2 {
		fmt.Fprintln(os.Stderr, "proxybench: fewer than 2 CPUs: running unpinned, figures are not comparable")
	} else {
		if err := pinProcess(os.Getpid(), o.loadCPU); err != nil {
			fmt.Fprintln(os.Stderr, "proxybench:", err)
			return 1
		}
		runtime.GOMAXPROCS(1) // the generator and backends own exactly one CPU
	}

	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	be, err := newBackend(o.backends)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxybench: backends:", err)
		return 1
	}
	bctx, bcancel := context.WithCancel(ctx)
	be.serve(bctx)
	defer func() {
		bcancel()
		be.close()
		be.wait()
	}()

	kinds := []targetKind{
		directKind(),
		vipdKind(kids, "vipd", o.vipd, dir),
	}
	if o.vipdBase != "" {
		kinds = append(kinds, vipdKind(kids, "vipd-base", o.vipdBase, dir))
	}
	// maxconn leaves room for the idle and storm tests; two descriptors per connection, two per pipe, some spare.
	kinds = append(kinds, haproxyKind(kids, dir, held+200, max(16, (int(limit)-2*(held+200)-300)/2)))
	var active []targetKind
	var skipped []string
	for _, k := range kinds {
		switch {
		case !selected(o.only, k.name):
		case k.skip != "":
			skipped = append(skipped, fmt.Sprintf("%s skipped: %s", k.name, k.skip))
		default:
			active = append(active, k)
		}
	}
	fmt.Printf("proxybench: proxy on CPU %d (two-CPU tests: %d,%d, shared with the load), generator and %d backends on CPU %d; "+
		"%s per test, %d repetitions, %d idle connections, storm of %d within %s, somaxconn %d; load average %s\n",
		o.proxyCPU, o.proxyCPU, o.loadCPU, o.backends, o.loadCPU, o.dur, o.reps, o.idle, o.storm, o.stormWindow, somaxconn, loadAvg())
	res := newResults()
	// Repetitions outermost and targets innermost, so every target of a repetition sees about the same
	// machine (this one is shared and noisy): ratios are taken within a repetition.
	for rep := range o.reps {
		for _, tt := range tests() {
			if !selected(o.tests, tt.name) {
				continue
			}
			cpus := []int{o.proxyCPU}
			if tt.cpus == 2 {
				cpus = append(cpus, o.loadCPU)
			}
			for _, k := range active {
				if ctx.Err() != nil {
					return 130
				}
				waitDrained(be, 5*time.Second)
				note := func(format string, args ...any) {
					fmt.Printf("  %d %-9s %-7s %s\n", rep+1, k.name, tt.name, fmt.Sprintf(format, args...))
				}
				t, err := k.start(ctx, be.addrs(), cpus)
				if err != nil {
					note("%v", err)
					continue
				}
				s := tt.run(ctx, t, be, o, note)
				t.stop()
				res.add(rep, k.name, tt.name, s)
			}
		}
	}
	fmt.Printf("proxybench: done; load average %s\n", loadAvg())
	printTable(os.Stdout, res, active, o)
	for _, s := range skipped {
		fmt.Println(s)
	}
	return 0
}
