#!/usr/bin/env bash
# make demo: build, start three vipd nodes and three fake apiservers, show the cluster and a request through
# the VIP, kill the leader and show the VIP answering from another node with the measured outage. The cluster
# is left running; `make demo-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0 # compose 1.29's legacy builder; nothing is pulled
P=${VIPD_PROJECT:-vipd}
NET=${VIPD_CLIENT_NET:-172.28.0}
compose() { docker-compose -p "$P" "$@"; }
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

for tool in go docker docker-compose; do
	command -v "$tool" >/dev/null || { echo "make demo needs $tool in PATH" >&2; exit 1; }
done

say "Building the static binaries (make build) and the FROM scratch images (docker-compose build, offline)"
make --no-print-directory build
CGO_ENABLED=0 go build -trimpath -o bin/democlient ./integration/democlient
compose build -q
docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' vipd-agent:dev
docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' vipd-apiserver:dev

# The nodes authenticate Raft and gossip with a cluster key, as a real deployment would.
export VIPD_KEY_DIR=${VIPD_KEY_DIR:-$PWD/.vipd-demo}
if [ ! -s "$VIPD_KEY_DIR/cluster.key" ]; then
	mkdir -p "$VIPD_KEY_DIR"
	(umask 077 && bin/vipd keygen > "$VIPD_KEY_DIR/cluster.key")
	echo "  made a cluster key: $VIPD_KEY_DIR/cluster.key (mode 0600)"
fi

say "Starting lb1..lb3 (vipd) and api1..api3 (fake kube-apiservers); the VIP is ${NET}.50"
# A second `make demo` starts again from fresh nodes: remove the old ones first (a recreate in place would
# replace them one by one, mixing new, empty nodes with the old cluster).
compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
compose up -d
bin/democlient -project "$P" -net "$NET" wait

say "\$ docker exec ${P}_lb1_1 /vipd members"
docker exec "${P}_lb1_1" /vipd members

say "Requests through the VIP (each a new TLS connection; the leader's proxy spreads them over the apiservers)"
bin/democlient -project "$P" -net "$NET" get

say "Failover"
bin/democlient -project "$P" -net "$NET" failover
next=$(bin/democlient -project "$P" -net "$NET" leader)

say "\$ docker exec ${P}_${next}_1 /vipd members"
docker exec "${P}_${next}_1" /vipd members

say "Requests through the VIP, now served by ${next}"
bin/democlient -project "$P" -net "$NET" get

say "The cluster is still running: VIP https://${NET}.50:6443, vipd admin API http://${NET}.1{1,2,3}:7948."
echo "Try: docker exec ${P}_${next}_1 /vipd status     Stop and remove everything with: make demo-down"
