package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Checks of the host, run by New before anything listens (and so by `vipd validate`): whatever would otherwise
// fail late — after the proxy and admin API already listen — or silently: an address that is not on this
// host, two of the agent's own ports on one address, a backend that is one of its own frontends (one client
// connection would loop through the proxy until file descriptors run out), a -data-dir that cannot hold
// Raft's state. They read the host's state and change nothing.

// hostAddrs lists this host's addresses; a variable so tests can fake a host.
type hostAddrs func() ([]netip.Addr, error)

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list this host's addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}

// onHost reports whether ip is an address of this host: one of its interfaces' addresses, or any of
// 127.0.0.0/8 (Linux answers the whole block on lo).
func onHost(ip netip.Addr, local []netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is4() && ip.IsLoopback() {
		return true
	}
	for _, a := range local {
		if a == ip {
			return true
		}
	}
	return false
}

// endpoint is one of the agent's own listening sockets, for the clash check.
type endpoint struct {
	setting string // how the operator named it: -listen, frontends[1] (api).listen, -raft-port …
	ip      netip.Addr
	port    int
	wild    bool // listens on every address
	udp     bool // gossip listens on UDP as well
}

func (e endpoint) overlaps(o endpoint) bool {
	return e.port == o.port && e.port != 0 && (e.wild || o.wild || e.ip == o.ip)
}

func parseEndpoint(setting, hostport string) (endpoint, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return endpoint{}, fmt.Errorf("%s: %q is not host:port", setting, hostport)
	}
	n, _ := strconv.Atoi(port)
	e := endpoint{setting: setting, port: n}
	if host == "" {
		e.wild = true
		return e, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if strings.EqualFold(host, "localhost") {
			ip = netip.MustParseAddr("127.0.0.1")
		} else {
			return endpoint{}, fmt.Errorf("%s: host %q must be an IP address (a listener binds one address)", setting, host)
		}
	}
	e.ip, e.wild = ip.Unmap(), ip.IsUnspecified()
	return e, nil
}

// checkHost runs every host check for cfg with its resolved frontends.
func (c *Config) checkHost(specs []frontendSpec, local hostAddrs) error {
	addrs, err := local()
	if err != nil {
		return err
	}
	vips := map[netip.Addr]bool{}
	for _, v := range c.VIPs {
		if p, err := netip.ParsePrefix(v); err == nil {
			vips[p.Addr()] = true
		}
	}
	var own []endpoint
	for _, s := range specs {
		e, err := parseEndpoint(s.fieldName("Listen"), s.listen)
		if err != nil {
			return &ConfigError{msg: err.Error()}
		}
		if !e.wild && !onHost(e.ip, addrs) && !vips[e.ip] {
			return &ConfigError{msg: fmt.Sprintf("%s: %s is not an address of this host (nor a -vip): listen on :%d, an address of this host, or the VIP", e.setting, e.ip, e.port)}
		}
		own = append(own, e)
	}
	admin, err := parseEndpoint("-http-addr", c.HTTPAddr)
	if err != nil {
		return &ConfigError{msg: err.Error()}
	}
	if !admin.wild && !onHost(admin.ip, addrs) {
		return &ConfigError{msg: fmt.Sprintf("-http-addr: %s is not an address of this host", admin.ip)}
	}
	own = append(own, admin)
	if c.ClusterEnabled() {
		bind := c.Bind
		if bind == "" && c.Dev {
			bind = "127.0.0.1"
		}
		ip, err := netip.ParseAddr(bind)
		if err == nil && !ip.IsUnspecified() && !onHost(ip, addrs) {
			return &ConfigError{msg: fmt.Sprintf("-bind: %s is not an address of this host: use one of its addresses (ip -br addr), and -advertise for a NAT address peers reach it on", bind)}
		}
		if err == nil {
			own = append(own,
				endpoint{setting: "-gossip-port", ip: ip.Unmap(), wild: ip.IsUnspecified(), port: c.GossipPort, udp: true},
				endpoint{setting: "-raft-port", ip: ip.Unmap(), wild: ip.IsUnspecified(), port: c.RaftPort})
		}
	}
	for i, a := range own {
		for _, b := range own[i+1:] {
			if a.overlaps(b) {
				return &ConfigError{msg: fmt.Sprintf("%s and %s both use port %d on the same address: give one of them another port", b.setting, a.setting, a.port)}
			}
		}
	}
	if err := checkLoops(specs, own, addrs, vips); err != nil {
		return err
	}
	if c.ClusterEnabled() && c.DataDir != "" {
		if err := checkDataDir(c.DataDir); err != nil {
			return &ConfigError{msg: "-data-dir: " + err.Error()}
		}
	}
	return nil
}

// checkLoops refuses a backend that is one of the agent's own frontends (or its other ports).
func checkLoops(specs []frontendSpec, own []endpoint, local []netip.Addr, vips map[netip.Addr]bool) error {
	for _, s := range specs {
		for i, b := range s.backends {
			host, port, err := net.SplitHostPort(b.Addr)
			if err != nil {
				continue // the health check's validation names it
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				if !strings.EqualFold(host, "localhost") {
					continue // a name: the proxy's own guard refuses a dial to itself
				}
				ip = netip.MustParseAddr("127.0.0.1")
			}
			ip = ip.Unmap()
			if !onHost(ip, local) && !vips[ip] {
				continue
			}
			n, _ := strconv.Atoi(port)
			for _, e := range own {
				if e.port == n && (e.wild || e.ip == ip) {
					return &ConfigError{msg: fmt.Sprintf("%s: %s is this agent's own %s: a connection would loop through the proxy; point it at the real backend",
						s.fieldName(fmt.Sprintf("Backends[%d]", i)), b.Addr, e.setting)}
				}
			}
		}
	}
	return nil
}

// checkDataDir checks that dir is (or can become) a directory Raft can write to, without creating anything.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is a file, not a directory: give a directory for Raft's state", dir)
	case err == nil:
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("%s is not writable by this user (%v): fix its owner or mode", dir, err)
		}
		return nil
	case !missing(err):
		return fmt.Errorf("%s: %v", dir, err)
	}
	// Missing: the closest existing parent must be a writable directory (the agent creates the rest).
	parent := filepath.Dir(filepath.Clean(dir))
	for {
		fi, err := os.Stat(parent)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s cannot be created: %s is a file", dir, parent)
			}
			if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("%s cannot be created: %s is not writable by this user", dir, parent)
			}
			return nil
		}
		if !missing(err) || parent == filepath.Dir(parent) {
			return fmt.Errorf("%s: %v", dir, err)
		}
		parent = filepath.Dir(parent)
	}
}

// missing reports a path that does not exist, or whose parent is not a directory.
func missing(err error) bool { return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) }
