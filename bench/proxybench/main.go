// Command proxybench is `make bench`: a loopback benchmark of vipd's proxy beside a direct connection to the
// backend and HAProxy, with the proxy under test pinned to one CPU and the load generator and backends to
// another. It prints one table of throughput, short-connection cost, latency and idle-connection footprint, with
// the vipd/HAProxy ratio checked against the targets of issue 2.
//
// Every measurement gets a fresh proxy process, so one test's leftovers (heap, pools, TIME_WAIT) do not flatter
// or penalise the next; every loop is bounded in time; every child process is killed when the harness exits.
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
	vipd     string
	dur      time.Duration
	streams  int
	workers  int
	perSec   int
	idle     int
	backends int
	proxyCPU int
	loadCPU  int
	only     string
	tests    string
}

func main() {
	var o options
	flag.StringVar(&o.vipd, "vipd", "bin/vipd", "vipd binary to benchmark")
	flag.DurationVar(&o.dur, "duration", 5*time.Second, "length of each throughput, rate and latency measurement")
	flag.IntVar(&o.streams, "streams", 4, "parallel bulk streams")
	flag.IntVar(&o.workers, "workers", 4, "concurrent closed-loop workers in the short-connection test")
	flag.IntVar(&o.perSec, "rate", 1000, "connections per second in the open-loop latency test")
	flag.IntVar(&o.idle, "idle", 9000, "idle connections held through each target")
	flag.IntVar(&o.backends, "backends", 3, "backend servers behind the proxies")
	flag.IntVar(&o.proxyCPU, "proxy-cpu", 0, "CPU the proxy under test is pinned to")
	flag.IntVar(&o.loadCPU, "load-cpu", 1, "CPU the load generator and backends are pinned to")
	flag.StringVar(&o.only, "only", "direct,vipd,haproxy", "comma-separated targets to run")
	flag.StringVar(&o.tests, "tests", "bulk,rate,latency,idle", "comma-separated tests to run")
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
	if need := 2*o.idle + 500; uint64(need) > limit {
		fmt.Fprintf(os.Stderr, "proxybench: -idle %d needs about %d descriptors in the harness; the limit is %d\n", o.idle, need, limit)
		return 2
	}
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
		vipdKind(kids, o.vipd, dir, o.proxyCPU),
		// maxconn leaves room for the idle test; two descriptors per connection, two per pipe, some spare.
		haproxyKind(kids, dir, o.proxyCPU, o.idle+200, max(16, (int(limit)-2*(o.idle+200)-300)/2)),
	}
	fmt.Printf("proxybench: proxy on CPU %d, generator and %d backends on CPU %d; %s per test, %d idle connections\n",
		o.proxyCPU, o.backends, o.loadCPU, o.dur, o.idle)
	var results []result
	for _, k := range kinds {
		if !selected(o.only, k.name) {
			continue
		}
		if k.skip != "" {
			fmt.Printf("  %-8s skipped: %s\n", k.name, k.skip)
			results = append(results, result{name: k.name, skipped: k.skip})
			continue
		}
		r := measure(ctx, k, be, o)
		results = append(results, r)
		if ctx.Err() != nil {
			return 130
		}
	}
	printTable(os.Stdout, results)
	return 0
}
