package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// subnet is private to the namespaces this program creates; nothing outside them ever sees it.
const (
	subnetPrefix = "10.213.0."
	vipAddr      = subnetPrefix + "50"
	vipPrefixLen = 24
	clientAddr   = subnetPrefix + "100"
	arpAskAddr   = subnetPrefix + "99" // the ARP observer asks in the name of this unused address
	proxyPort    = 6443
	backendPort  = 8080
	adminAddr    = "127.0.0.1:7948"
)

// topo is three node namespaces and a client namespace, each with an eth0 whose peer is a port of a bridge in a
// namespace of its own, so nothing touches the host's interfaces.
type topo struct {
	prefix string // unique, short: interface names are limited to 15 bytes
	nodes  []string
	run    func(args ...string) error
}

func (t *topo) ns(name string) string      { return t.prefix + "-" + name }
func (t *topo) bridgeNS() string           { return t.ns("br") }
func (t *topo) clientNS() string           { return t.ns("c") }
func (t *topo) nodeIP(i int) string        { return fmt.Sprintf("%s%d", subnetPrefix, 11+i) }
func (t *topo) bridgePort(n string) string { return n } // port name inside the bridge namespace

func runCmd(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// build creates everything; on error the caller still runs teardown, which removes whatever exists.
func (t *topo) build() error {
	br := t.bridgeNS()
	steps := [][]string{
		{"ip", "netns", "add", br},
		{"ip", "-n", br, "link", "set", "lo", "up"},
		{"ip", "-n", br, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", br, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := t.run(s...); err != nil {
			return err
		}
	}
	members := append(append([]string{}, t.nodes...), "c")
	for i, m := range members {
		ns := t.ns(m)
		addr := clientAddr
		if m != "c" {
			addr = t.nodeIP(i)
		}
		tmpA, tmpB := t.prefix+m+"a", t.prefix+m+"b"
		steps := [][]string{
			{"ip", "netns", "add", ns},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
			{"ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB},
			{"ip", "link", "set", tmpA, "netns", ns, "name", "eth0"},
			{"ip", "link", "set", tmpB, "netns", br, "name", t.bridgePort(m)},
			{"ip", "-n", br, "link", "set", t.bridgePort(m), "master", "br0", "up"},
			{"ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
		}
		if m != "c" {
			// As in the compose suite: the VIP lives on lo and only vipd itself answers ARP for it.
			steps = append(steps, []string{"ip", "netns", "exec", ns, "sysctl", "-q",
				"-w", "net.ipv4.conf.all.arp_ignore=1",
				"-w", "net.ipv4.conf.all.arp_announce=2",
				"-w", "net.ipv4.ip_forward=0"})
		}
		for _, s := range steps {
			if err := t.run(s...); err != nil {
				return err
			}
		}
	}
	return nil
}

// teardown deletes every namespace (their veths and the bridge go with them) and any veth still in the host
// namespace after a half-done build. Errors are ignored: it removes what exists.
func (t *topo) teardown() {
	for _, m := range append(append([]string{}, t.nodes...), "c", "br") {
		exec.Command("ip", "netns", "del", t.ns(m)).Run()
		exec.Command("ip", "link", "del", t.prefix+m+"a").Run()
	}
}

// linkDown cuts node's only link (the crash scenario's "pull the cable").
func (t *topo) setLink(node string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return t.run("ip", "-n", t.ns(node), "link", "set", "eth0", state)
}

// partition drops all traffic between node and its peers, in both directions, inside node's namespace, while
// the client (and ARP, which nft's inet family does not see) still get through.
func (t *topo) partition(node string, peers []string) error {
	set := strings.Join(peers, ", ")
	rules := fmt.Sprintf(`table inet vipdbench {
	chain in { type filter hook input priority 0; ip saddr { %s } drop; }
	chain out { type filter hook output priority 0; ip daddr { %s } drop; }
}
`, set, set)
	cmd := exec.Command("ip", "netns", "exec", t.ns(node), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft partition %s: %w: %s", node, err, out)
	}
	return nil
}

func (t *topo) heal(node string) error {
	return t.run("ip", "netns", "exec", t.ns(node), "nft", "delete", "table", "inet", "vipdbench")
}
