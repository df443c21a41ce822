package viptest

import (
	"net/netip"
	"sort"
	"sync"
	"testing"
)

// FakeNetwork is a shared in-memory "wire" between the FakeKernels of an in-process cluster. It knows
// which node has each VIP configured, which node answers ARP for it and which node's announcement
// clients last saw, and it fails the test (t.Errorf, safe from any goroutine) the instant two nodes
// hold or answer for the same VIP at once.
type FakeNetwork struct {
	t       testing.TB
	mu      sync.Mutex
	kernels map[string]*FakeKernel
	holders map[netip.Addr]map[string]bool
	answers map[netip.Addr]map[string]int
	owner   map[netip.Addr]string // last announcer: where clients' neighbour caches point
	maxHeld map[netip.Addr]int
}

// NewFakeNetwork returns an empty network reporting invariant violations to t.
func NewFakeNetwork(t testing.TB) *FakeNetwork {
	return &FakeNetwork{
		t:       t,
		kernels: make(map[string]*FakeKernel),
		holders: make(map[netip.Addr]map[string]bool),
		answers: make(map[netip.Addr]map[string]int),
		owner:   make(map[netip.Addr]string),
		maxHeld: make(map[netip.Addr]int),
	}
}

// Kernel returns node's FakeKernel on this network, creating it on first use.
func (n *FakeNetwork) Kernel(node string) *FakeKernel {
	n.mu.Lock()
	defer n.mu.Unlock()
	if k, ok := n.kernels[node]; ok {
		return k
	}
	k := newFakeKernel(node, n)
	n.kernels[node] = k
	return k
}

// Holders returns, sorted, the nodes that have ip configured now.
func (n *FakeNetwork) Holders(ip netip.Addr) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return sortedKeys(n.holders[ip])
}

// Responders returns, sorted, the nodes answering ARP/NDP for ip now.
func (n *FakeNetwork) Responders(ip netip.Addr) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for node, c := range n.answers[ip] {
		if c > 0 {
			out = append(out, node)
		}
	}
	sort.Strings(out)
	return out
}

// Owner returns the node whose announcement for ip clients saw last ("" if none): the fake
// equivalent of the clients' neighbour caches.
func (n *FakeNetwork) Owner(ip netip.Addr) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.owner[ip]
}

// MaxHolders returns the largest number of simultaneous holders of ip seen so far; anything above 1
// has already failed the test.
func (n *FakeNetwork) MaxHolders(ip netip.Addr) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.maxHeld[ip]
}

func (n *FakeNetwork) add(node string, ip netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.holders[ip] == nil {
		n.holders[ip] = make(map[string]bool)
	}
	n.holders[ip][node] = true
	if c := len(n.holders[ip]); c > n.maxHeld[ip] {
		n.maxHeld[ip] = c
	}
	if len(n.holders[ip]) > 1 {
		n.t.Errorf("invariant violated: VIP %s held by %v at once", ip, sortedKeys(n.holders[ip]))
	}
}

func (n *FakeNetwork) del(node string, ip netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.holders[ip], node)
}

func (n *FakeNetwork) answer(node string, ips []netip.Addr, delta int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ip := range ips {
		if n.answers[ip] == nil {
			n.answers[ip] = make(map[string]int)
		}
		n.answers[ip][node] += delta
		var who []string
		for other, c := range n.answers[ip] {
			if c > 0 {
				who = append(who, other)
			}
		}
		if len(who) > 1 {
			sort.Strings(who)
			n.t.Errorf("invariant violated: ARP for VIP %s answered by %v at once", ip, who)
		}
	}
}

func (n *FakeNetwork) announce(node string, ip netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.owner[ip] = node
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
