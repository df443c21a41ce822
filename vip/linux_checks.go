//go:build linux

package vip

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Sentinel errors of the start-up checks, so the agent can tell configuration problems apart.
var (
	// ErrMissingCapability: the process lacks CAP_NET_ADMIN or CAP_NET_RAW.
	ErrMissingCapability = errors.New("missing capability")
	// ErrSysctl: arp_ignore on the announcing interface is 0 and could not be set.
	ErrSysctl = errors.New("sysctl not set")
	// ErrInterface: -interface is missing, down, not Ethernet, or could not be chosen.
	ErrInterface = errors.New("bad -interface")
)

const (
	capNetAdmin = 12
	capNetRaw   = 13
)

// CheckCapabilities returns an error naming the missing capability if the process cannot add
// addresses (CAP_NET_ADMIN) or open raw ARP/NDP sockets (CAP_NET_RAW), so that a misconfigured node
// fails at start rather than at its first failover.
func CheckCapabilities() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	eff, err := parseCapEff(string(b))
	if err != nil {
		return err
	}
	return checkCaps(eff)
}

func parseCapEff(status string) (uint64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse CapEff %q: %w", v, err)
			}
			return eff, nil
		}
	}
	return 0, errors.New("parse capabilities: no CapEff line in /proc/self/status")
}

func checkCaps(eff uint64) error {
	if eff&(1<<capNetAdmin) == 0 {
		return fmt.Errorf("%w: -vip needs CAP_NET_ADMIN to add addresses: run as root or grant the capability",
			ErrMissingCapability)
	}
	if eff&(1<<capNetRaw) == 0 {
		return fmt.Errorf("%w: -vip needs CAP_NET_RAW to answer and announce ARP: run as root or grant the capability",
			ErrMissingCapability)
	}
	return nil
}

// ResolveInterface returns the announcing interface: name itself if given (after checking that it
// exists), otherwise the one non-loopback interface with an address whose subnet contains every VIP
// of its family. Docker names a container's interfaces in alphabetical order of network names, so
// choosing by subnet is what makes the compose setup independent of that order.
func ResolveInterface(name string, vips []netip.Prefix) (string, error) {
	if name != "" {
		if _, err := net.InterfaceByName(name); err != nil {
			return "", fmt.Errorf("%w: -interface %s: %w", ErrInterface, name, err)
		}
		return name, nil
	}
	ifis, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	var found []string
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return "", fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		if containsAll(addrs, vips) {
			found = append(found, ifi.Name)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no interface has a subnet containing VIP %s: set -interface",
			ErrInterface, joinPrefixes(vips))
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("%w: interfaces %s all have a subnet containing VIP %s: set -interface",
			ErrInterface, strings.Join(found, ", "), joinPrefixes(vips))
	}
}

// containsAll reports whether, for every VIP, some address of the same family has a subnet (not a
// host route) containing it.
func containsAll(addrs []net.Addr, vips []netip.Prefix) bool {
	if len(vips) == 0 {
		return false
	}
	for _, v := range vips {
		ok := false
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil || p.Addr().Is4() != v.Addr().Is4() || p.IsSingleIP() {
				continue
			}
			if p.Masked().Contains(v.Addr()) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// ensureARPSysctls sets arp_ignore=1 and arp_announce=2 on ifname so the kernel never answers ARP
// for the VIP (which lives on lo). If /proc/sys is read-only (a container) it accepts values already
// set, including through net.ipv4.conf.all (the kernel uses the larger of "all" and the interface).
func ensureARPSysctls(ifname string, warn func(msg string, args ...any)) error {
	if got, err := ensureSysctl(ifname, "arp_ignore", 1); err != nil {
		dotted := strings.ReplaceAll(ifname, ".", "/")
		return fmt.Errorf("%w: net.ipv4.conf.%s.arp_ignore is %d and could not be set to 1 (%w): "+
			"without it the kernel answers ARP for the VIP even after vipd dies. Fix: `sysctl -w "+
			"net.ipv4.conf.%s.arp_ignore=1` on the node, or in docker compose `sysctls: "+
			"[net.ipv4.conf.all.arp_ignore=1, net.ipv4.conf.all.arp_announce=2]`", ErrSysctl, dotted, got, err, dotted)
	}
	if got, err := ensureSysctl(ifname, "arp_announce", 2); err != nil {
		warn("arp_announce is below 2: the kernel may use the VIP as ARP source address",
			"sysctl", "net.ipv4.conf."+ifname+".arp_announce", "value", got, "err", err)
	}
	return nil
}

// ensureSysctl makes the effective value of net.ipv4.conf.{all,ifname}.key at least want. It returns
// the effective value and an error only if that is still below want.
func ensureSysctl(ifname, key string, want int) (int, error) {
	path := "/proc/sys/net/ipv4/conf/" + ifname + "/" + key
	effective := func() int {
		return max(readInt("/proc/sys/net/ipv4/conf/all/"+key), readInt(path))
	}
	if effective() >= want {
		return effective(), nil
	}
	werr := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644)
	if got := effective(); got >= want {
		return got, nil
	} else if werr == nil {
		werr = fmt.Errorf("wrote %d but read back %d", want, got)
	}
	return effective(), werr
}

func readInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return v
}
