#!/usr/bin/env bash
# make demo: build, start three vipd nodes and three fake apiservers, show the cluster and a request through
# the VIP, kill the leader and show the VIP answering from another node with the measured outage. The cluster
# is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0 # compose 1.29's legacy builder; nothing is pulled
P=${VIPD_PROJECT:-vipd}
NET=${VIPD_CLIENT_NET:-172.28.0}
compose() { docker-compose -p "$P" "$@"; }

make build
CGO_ENABLED=0 go build -o bin/democlient ./integration/democlient
compose build
compose up -d
bin/democlient -project "$P" -net "$NET" wait
echo
echo "\$ docker exec ${P}_lb1_1 /vipd members"
docker exec "${P}_lb1_1" /vipd members
echo
bin/democlient -project "$P" -net "$NET" get
echo
bin/democlient -project "$P" -net "$NET" failover
echo
sleep 2
for n in lb1 lb2 lb3; do
	if [ "$(docker inspect -f '{{.State.Running}}' "${P}_${n}_1")" = true ]; then
		echo "\$ docker exec ${P}_${n}_1 /vipd members"
		docker exec "${P}_${n}_1" /vipd members
		break
	fi
done
echo
bin/democlient -project "$P" -net "$NET" get
echo
echo "The cluster is still running (VIP ${NET}.50:6443). Stop and remove it with:"
echo "  docker-compose -p $P down -v          (add --rmi all to remove the images too)"
