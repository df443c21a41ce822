package proxy

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ReservedFDs is what DefaultMaxConns keeps out of RLIMIT_NOFILE for everything that is not a proxied
// connection. Counted on a three-node cluster: Raft's transport (a listener and a pool of up to 3 connections
// per peer) and its BoltDB files, about 15; memberlist's UDP and TCP listeners plus short-lived push/pull
// connections, about 10; one in-flight health check per backend, a few dozen for several frontends; the admin
// API's listener and clients, about 10; stdio, epoll and the random source, about 10; and the proxy's own
// free list of splice pipes, 64 (32 pipes of 2 fds). That is about 150; 256 leaves room for bursts (a hook
// run, many peers) without a dial failing for want of a descriptor.
const ReservedFDs = 256

// fdsPerConn is what one proxied connection holds for its whole life: the client and the backend socket. A
// busy direction also borrows a splice pipe (2 fds) while bytes are in flight; those come and go, and a dial
// that then hits the limit is refused as a local error, never blamed on the backend.
const fdsPerConn = 2

// DefaultMaxConns returns the MaxConns each of frontends proxies should get so that together they stay
// within this process's RLIMIT_NOFILE: (soft limit - ReservedFDs) / 2 fds per connection / frontends. It
// first raises the soft limit to the hard limit, as Go's runtime already does at start (to hard-1, since Go
// 1.19) unless something lowered it since. Beyond MaxConns new connections are refused at once, which beats
// accepting them and failing their dials. It fails when frontends < 1 or the limit leaves no room.
func DefaultMaxConns(frontends int) (int, error) {
	if frontends < 1 {
		return 0, errors.New("DefaultMaxConns: need at least one frontend")
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Max != unix.RLIM_INFINITY && lim.Cur+1 < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	soft := lim.Cur
	if soft == unix.RLIM_INFINITY || soft > 1<<30 {
		soft = 1 << 30 // the kernel's own ceiling (fs.nr_open) is far below; keep the arithmetic in int
	}
	if soft <= ReservedFDs+fdsPerConn*uint64(frontends) {
		return 0, fmt.Errorf("RLIMIT_NOFILE is %d: that leaves no descriptors for proxied connections after the %d "+
			"reserved for Raft, gossip, checks and the admin API; raise it (e.g. LimitNOFILE=1048576 in the systemd unit, or ulimit -n)",
			soft, ReservedFDs)
	}
	return int((soft - ReservedFDs) / fdsPerConn / uint64(frontends)), nil
}
