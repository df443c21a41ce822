// Package integration is vipd's end-to-end failover suite: it starts the
// top-level docker-compose.yml (three vipd nodes, three fake apiservers),
// probes the VIP from the host every 10 ms, watches who answers ARP for it,
// and breaks things — kill, stop, pause, partition, unhealthy upstreams —
// asserting that two nodes never hold the VIP and recording the outages.
//
// The tests carry the build tag `integration`: run them with
// `make integration` (go test -tags integration ./integration/). They need
// root (raw sockets, nsenter), Docker and docker-compose 1.29.
package integration
