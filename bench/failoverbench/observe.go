package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vipd/vipd/integration/arpwatch"
	"github.com/vipd/vipd/integration/probe"
)

// window is what the client namespace saw in a time window: every probe, and the ARP observer's analysis.
type window struct {
	Samples []probe.Sample  `json:"samples"`
	ARP     arpwatch.Report `json:"arp"`
}

// observeMain is the `observe` subcommand, run inside the client namespace: it probes addr every interval with
// a budget per probe, asks who-has VIP every interval, and answers "window FROM TO" lines on stdin (Unix
// nanoseconds) with one JSON line on stdout. It exits when stdin closes.
func observeMain(args []string) error {
	fs := flag.NewFlagSet("observe", flag.ContinueOnError)
	addr := fs.String("addr", "", "VIP:port to probe")
	interval := fs.Duration("interval", 10*time.Millisecond, "probe and ARP interval")
	budget := fs.Duration("budget", 50*time.Millisecond, "time one probe (connect + reply) may take")
	iface := fs.String("iface", "eth0", "interface for the ARP observer")
	vip := fs.String("vip", "", "address the ARP observer asks for")
	askIP := fs.String("ask-ip", "", "unused address the ARP observer asks from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	p := &prober{addr: *addr, budget: *budget}
	w := arpwatch.New(arpwatch.Config{
		Interface: *iface,
		Target:    netip.MustParseAddr(*vip),
		SenderIP:  netip.MustParseAddr(*askIP),
		SenderMAC: net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x99},
		Interval:  *interval,
	})
	var wg sync.WaitGroup
	arpErr := make(chan error, 1)
	wg.Add(2)
	go func() { defer wg.Done(); p.run(ctx, *interval) }()
	go func() { defer wg.Done(); arpErr <- w.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		select {
		case err := <-arpErr:
			if err != nil {
				return err
			}
		default:
		}
		f := strings.Fields(in.Text())
		if len(f) != 3 || f[0] != "window" {
			return fmt.Errorf("observe: bad command %q", in.Text())
		}
		from, err1 := strconv.ParseInt(f[1], 10, 64)
		to, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("observe: bad window %q", in.Text())
		}
		fromT, toT := time.Unix(0, from), time.Unix(0, to)
		res := window{Samples: p.samples(fromT, toT), ARP: w.Report(fromT, toT)}
		if err := json.NewEncoder(out).Encode(res); err != nil {
			return err
		}
		out.Flush()
	}
	return nil
}

// prober opens a fresh connection every interval and reads the answering backend's node name.
type prober struct {
	addr   string
	budget time.Duration
	mu     sync.Mutex
	all    []probe.Sample
}

func (p *prober) run(ctx context.Context, interval time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 64)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s := p.once()
				p.mu.Lock()
				p.all = append(p.all, s)
				p.mu.Unlock()
			}()
		default: // 64 probes hanging: skip a tick
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *prober) once() probe.Sample {
	s := probe.Sample{Start: time.Now()}
	defer func() { s.Latency = time.Since(s.Start) }()
	c, err := net.DialTimeout("tcp", p.addr, p.budget)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer c.Close()
	s.Connected = true
	c.SetDeadline(s.Start.Add(p.budget))
	b, err := io.ReadAll(io.LimitReader(c, 64))
	name := strings.TrimSpace(string(b))
	if err != nil || name == "" {
		s.Err = fmt.Sprintf("read node name: %v", err)
		return s
	}
	s.OK, s.Backend = true, name
	return s
}

func (p *prober) samples(from, to time.Time) []probe.Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probe.Sample
	for _, s := range p.all {
		if !s.Start.Before(from) && s.Start.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// observer is the orchestrator's handle on the observe subprocess.
type observer struct {
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Reader
	cmd *exec.Cmd
}

func (o *observer) window(from, to time.Time) (window, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var w window
	if _, err := fmt.Fprintf(o.in, "window %d %d\n", from.UnixNano(), to.UnixNano()); err != nil {
		return w, fmt.Errorf("ask observer: %w", err)
	}
	line, err := o.out.ReadBytes('\n')
	if err != nil {
		return w, fmt.Errorf("read observer: %w", err)
	}
	return w, json.Unmarshal(line, &w)
}

// backendMain is the `backend` subcommand: a TCP server that writes its node's name and closes, so the probe
// learns which node's proxy carried the connection.
func backendMain(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve on")
	name := fs.String("name", "", "node name to answer with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, *name+"\n")
		}()
	}
}
