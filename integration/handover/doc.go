// Package handover holds the end-to-end test of planned VIP moves (issue 12, "hitless hand-over"): three real
// vipd agents, each in its own network namespace on one bridge, with a cluster key, in front of echo backends,
// with a client namespace holding a thousand idle connections and twenty checksummed streams through the VIP
// while the holder leaves (`vipd leave`) and every node is restarted in turn (SIGTERM). It asserts that no
// connection is reset, no byte is lost, new connections are served throughout, and a draining node exits as
// soon as its last connection is closed; the same run with -handover-drain=false must show the resets.
//
// It needs root (network namespaces, nftables) and the go tool (to build vipd, unless VIPD_BIN names a
// binary), and skips without them. Like integration/reload it has no build tag: `make unit` runs it. The
// package has tests only.
package handover
