// Package reload holds the reload-under-load test of issue 10: the real vipd binary in a network namespace,
// holding a VIP, in front of echo backends, with a thousand open connections and a steady rate of new ones
// from a client namespace while `vipd reload` and SIGHUP add a backend, remove one and change a check. It
// needs root (network namespaces) and the go tool (to build the binary, unless VIPD_BIN names one), and
// skips without them. It has no build tag: `make unit` runs it. The package has tests only.
package reload
