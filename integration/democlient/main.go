// Command democlient is the client side of `make demo`: it waits for the
// compose cluster, sends requests through the VIP from the host, and kills
// the leader while probing the VIP every 10 ms, to show the failover and
// its measured outage. curl is not needed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/vipd/vipd/integration/probe"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "democlient:", err)
		os.Exit(1)
	}
}

type config struct {
	project string
	net     string // first three octets of the client network
}

func (c config) vip() string            { return net.JoinHostPort(c.net+".50", "6443") }
func (c config) admin(lb string) string { return "http://" + c.net + ".1" + lb[len(lb)-1:] + ":7948" }

var lbs = []string{"lb1", "lb2", "lb3"}

func run(args []string) error {
	fs := flag.NewFlagSet("democlient", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.project, "project", "vipd", "docker-compose project name")
	fs.StringVar(&c.net, "net", "172.28.0", "first three octets of the client network (VIPD_CLIENT_NET)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch fs.Arg(0) {
	case "wait":
		return waitReady(c, 120*time.Second)
	case "get":
		return get(c, 6)
	case "failover":
		return failover(c)
	case "leader":
		l, err := leader(c)
		if err != nil {
			return err
		}
		fmt.Println(l)
		return nil
	}
	return errors.New("usage: democlient [-project vipd] [-net 172.28.0] wait|get|failover|leader")
}

type membersView struct {
	Leader    string `json:"leader"`
	VIPHolder string `json:"vip_holder"`
	Members   []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"members"`
}

func members(c config, lb string) (membersView, error) {
	var m membersView
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get(c.admin(lb) + "/v1/members")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// leader asks every node until one knows the leader that holds the VIP.
func leader(c config) (string, error) {
	var last error = errors.New("no node answered")
	for _, lb := range lbs {
		m, err := members(c, lb)
		if err != nil {
			last = err
			continue
		}
		if m.Leader != "" && m.VIPHolder == m.Leader {
			return m.Leader, nil
		}
		last = fmt.Errorf("%s: leader %q, VIP holder %q", lb, m.Leader, m.VIPHolder)
	}
	return "", last
}

func waitReady(c config, timeout time.Duration) error {
	p := probe.New(probe.Config{Addr: c.vip(), HTTPS: true})
	deadline := time.Now().Add(timeout)
	fmt.Printf("waiting for the cluster and the VIP %s ", c.vip())
	for {
		l, err := leader(c)
		if err == nil {
			m, _ := members(c, l)
			alive := 0
			for _, x := range m.Members {
				if x.Status == "alive" {
					alive++
				}
			}
			if s := p.Once(context.Background()); alive == 3 && s.OK {
				fmt.Printf("ready: leader %s holds the VIP\n", l)
				return nil
			}
		}
		if time.Now().After(deadline) {
			fmt.Println()
			return fmt.Errorf("cluster not ready within %s: %v", timeout, err)
		}
		fmt.Print(".")
		time.Sleep(500 * time.Millisecond)
	}
}

func get(c config, n int) error {
	p := probe.New(probe.Config{Addr: c.vip(), HTTPS: true, ConnectTimeout: time.Second})
	for i := 0; i < n; i++ {
		s := p.Once(context.Background())
		if !s.OK {
			return fmt.Errorf("GET https://%s/: %s", c.vip(), s.Err)
		}
		fmt.Printf("GET https://%s/ -> %s (%.1f ms)\n", c.vip(), s.Backend, float64(s.Latency.Microseconds())/1000)
	}
	return nil
}

func failover(c config) error {
	old, err := leader(c)
	if err != nil {
		return err
	}
	p := probe.New(probe.Config{Addr: c.vip(), HTTPS: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(time.Second) // a second of probes before the fault, for the baseline

	container := c.project + "_" + old + "_1"
	fmt.Printf("probing https://%s/ every 10 ms; killing the leader: docker kill %s\n", c.vip(), container)
	fault := time.Now()
	if out, err := exec.Command("docker", "kill", container).CombinedOutput(); err != nil {
		return fmt.Errorf("docker kill %s: %v: %s", container, err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !p.OKSince(fault.Add(50 * time.Millisecond)) {
		if time.Now().After(deadline) {
			return errors.New("the VIP did not answer again within 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // probes after the recovery, so a flap back would show
	o := p.Measure(fault, time.Now().Add(-500*time.Millisecond))
	var next string
	deadline = time.Now().Add(30 * time.Second)
	for next, err = leader(c); err != nil || next == old; next, err = leader(c) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no new leader holding the VIP within 30 s after killing %s (last: %q, %v)", old, next, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Gossip needs a few more seconds (memberlist's suspicion timeout) to
	// call the killed node dead; until then `vipd members` lists it suspect.
	for deadline = time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if m, err := members(c, next); err == nil && statusOf(m, old) == "dead" {
			break
		}
	}
	last, _ := p.LastOK()
	fmt.Printf("the VIP is now held by %s (which proxied the last probe to %s); longest client outage: %s (%d failed probes of %d)\n",
		next, last.Backend, o.Longest.Round(time.Millisecond), o.Failed, len(p.Samples(fault, time.Now())))
	fmt.Printf("bring %s back with: docker start %s (it rejoins as a follower; the VIP stays on %s)\n", old, container, next)
	return nil
}

func statusOf(m membersView, node string) string {
	for _, x := range m.Members {
		if x.Name == node {
			return x.Status
		}
	}
	return ""
}
