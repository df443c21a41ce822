//go:build linux

package vip

import (
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckLinuxKernel runs NewLinuxKernel's start-up checks without changing anything and without opening a
// socket, for `vipd validate`: the capabilities, the interface (exists, up, Ethernet), and arp_ignore — either
// already at least 1 or writable, so the agent can set it at start.
func CheckLinuxKernel(ifaceName string) error {
	if err := CheckCapabilities(); err != nil {
		return err
	}
	if _, err := checkInterface(ifaceName); err != nil {
		return err
	}
	path := "/proc/sys/net/ipv4/conf/" + ifaceName + "/arp_ignore"
	if max(readInt("/proc/sys/net/ipv4/conf/all/arp_ignore"), readInt(path)) >= 1 {
		return nil
	}
	if err := unix.Access(path, unix.W_OK); err != nil {
		dotted := strings.ReplaceAll(ifaceName, ".", "/")
		return fmt.Errorf("%w: net.ipv4.conf.%s.arp_ignore is 0 and this process cannot set it (%v): set it to 1 on the node, "+
			"or in docker compose with sysctls: [net.ipv4.conf.all.arp_ignore=1]", ErrSysctl, dotted, err)
	}
	return nil
}

// checkInterface finds the announcing interface and checks that the VIP can be answered on it.
func checkInterface(name string) (*net.Interface, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: -interface is empty (use ResolveInterface to choose one)", ErrInterface)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("%w: -interface %s: %w", ErrInterface, name, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("%w: -interface %s is down: bring it up (ip link set %s up)", ErrInterface, name, name)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%w: -interface %s has no Ethernet address (%q) to answer ARP with", ErrInterface, name, ifi.HardwareAddr)
	}
	return ifi, nil
}
