// Package integration is vipd's end-to-end failover suite: it starts the
// top-level docker-compose.yml (three vipd nodes, three fake apiservers),
// probes the VIP from the host every 10 ms, watches who answers ARP for it,
// and breaks things — kill, stop, pause, partition, unhealthy upstreams —
// asserting that two nodes never answer ARP for the VIP (over each whole
// scenario and the whole run) and that every outage stays within its bound.
//
// The tests carry the build tag `integration`: run them with
// `make integration` (go test -tags integration ./integration/). They need
// root (raw ARP socket on the bridge, nsenter), Docker, docker-compose 1.29,
// iptables and nsenter on the host, and go to build the static binaries.
// Under `make integration` (VIPD_IT_REQUIRE=1) a missing prerequisite fails
// the run; a plain go test skips.
//
// Each run uses its own compose project (vipdit<unix time>x<random>), free
// subnets in 172.28/16 and 172.29/16 and images tagged with the project
// name, built from a private copy of the binaries; all of it is removed at
// the end, on failure, on Ctrl-C or SIGTERM, and a minute before the go test
// timeout. Leftovers of a killed run are removed by the next run.
//
// TestRollingUpgrade (upgrade_test.go) is issue 11's upgrade scenario: it
// builds the previous release (commit f674e0d) from git beside this
// checkout, rolls a cluster of three from one to the other node by node
// while the same observers watch, and then switches the cluster key on;
// docs/upgrade.md gives its figures. -run TestRollingUpgrade runs it alone
// (about 1.5 minutes).
//
// VIPD_IT_TRIALS sets the trials of the repeated scenarios (default 5).
// `-run 'TestFailover/(01|05)'` runs a subset; the cluster is always formed.
// The outage table is printed last and written to integration/results.txt;
// a failed run also writes every vipd log line to integration/failed-run.log
// and shows, at each failure, every node's `vipd members` and last log lines.
package integration
