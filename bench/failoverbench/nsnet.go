package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// dialIn connects to addr from inside the named network namespace: the socket is created on a thread switched
// into that namespace and back. The thread must survive (switch back, then unlock) rather than be discarded: a
// thread that exits delivers Pdeathsig to every child it once forked, which would SIGKILL our vipd agents.
func dialIn(ns, addr string, timeout time.Duration) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("open netns %s: %w", ns, err)}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("enter netns %s: %w", ns, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, timeout)
		ch <- res{c, err}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else: stay locked, so no other goroutine runs in the wrong namespace
	}()
	r := <-ch
	return r.c, r.err
}

// status is the subset of vipd's GET /v1/status the harness needs.
type status struct {
	Node    string `json:"node"`
	Term    uint64 `json:"term"`
	Role    string `json:"role"`
	Leader  string `json:"leader"`
	Voters  int    `json:"voters"`
	VIPHeld bool   `json:"vip_held"`
	Healthy bool   `json:"healthy"`
}

func getStatus(ns string) (status, error) {
	var s status
	c, err := dialIn(ns, adminAddr, 300*time.Millisecond)
	if err != nil {
		return s, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintf(c, "GET /v1/status HTTP/1.0\r\nHost: localhost\r\n\r\n"); err != nil {
		return s, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /v1/status in %s: %s", ns, resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// loSample is which nodes had the VIP on lo at one instant.
type loSample struct {
	at      time.Time
	holders []string
}

// loWatch polls lo in every node namespace through netlink (no process per poll) and keeps the timeline.
type loWatch struct {
	mu      sync.Mutex
	samples []loSample
}

func (w *loWatch) run(stop <-chan struct{}, t *topo, every time.Duration) error {
	type nsLink struct {
		name string
		h    *netlink.Handle
		lo   netlink.Link
	}
	var links []nsLink
	defer func() {
		for _, l := range links {
			l.h.Close()
		}
	}()
	for _, n := range t.nodes {
		nsh, err := netns.GetFromName(t.ns(n))
		if err != nil {
			return fmt.Errorf("lo watch: %w", err)
		}
		h, err := netlink.NewHandleAt(nsh)
		nsh.Close()
		if err != nil {
			return fmt.Errorf("lo watch: netlink in %s: %w", n, err)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			h.Close()
			return fmt.Errorf("lo watch: lo in %s: %w", n, err)
		}
		links = append(links, nsLink{n, h, lo})
	}
	vip := net.ParseIP(vipAddr)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s := loSample{at: time.Now()}
		for _, l := range links {
			addrs, err := l.h.AddrList(l.lo, netlink.FAMILY_V4)
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if a.IP.Equal(vip) {
					s.holders = append(s.holders, l.name)
				}
			}
		}
		w.mu.Lock()
		w.samples = append(w.samples, s)
		w.mu.Unlock()
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

// overlap is the time in [from, to] during which two or more nodes not in exclude had the VIP on lo.
func (w *loWatch) overlap(from, to time.Time, exclude ...string) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var total time.Duration
	for i := 0; i+1 < len(w.samples); i++ {
		s, next := w.samples[i], w.samples[i+1]
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		n := 0
		for _, h := range s.holders {
			if !slices.Contains(exclude, h) {
				n++
			}
		}
		if n >= 2 {
			total += next.at.Sub(s.at)
		}
	}
	return total
}

// holders is the latest sample.
func (w *loWatch) holders() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.samples) == 0 {
		return nil
	}
	return w.samples[len(w.samples)-1].holders
}
