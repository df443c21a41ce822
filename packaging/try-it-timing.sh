#!/usr/bin/env bash
# Times docs/operations.md "Try it on one machine" on this host, in a throwaway network namespace ("the
# machine") with a client namespace on a veth: the commands as the guide gives them, the editor step as sed,
# systemctl (no systemd as PID 1 here) as the unit's ExecStart run as the vipd user with the unit's
# capabilities. From the start of dpkg -i to the first answer through the VIP. Needs root; installs the .deb
# on this host for the run and purges it, so it refuses to run where vipd is installed.
set -euo pipefail
deb=$(ls "$(dirname "$0")"/../bin/pkg/vipd_*.deb | head -1)   # make package first
if dpkg-query -W -f='${Status}' vipd 2>/dev/null | grep -q installed || [ -e /etc/vipd ]; then
  echo "vipd is installed here (or /etc/vipd exists): this script installs and purges the package; run it elsewhere" >&2
  exit 2
fi
M=tryit-m C=tryit-c
cleanup() {
  ip netns pids $M 2>/dev/null | xargs -r kill 2>/dev/null || true
  sleep 0.5
  ip netns exec $M dpkg --purge vipd >/dev/null 2>&1 || true
  userdel vipd 2>/dev/null || true; groupdel vipd 2>/dev/null || true
  ip netns del $M 2>/dev/null || true; ip netns del $C 2>/dev/null || true
}
trap cleanup EXIT
ip netns add $M; ip netns add $C
ip link add tm0 netns $M type veth peer name tc0 netns $C
ip -n $M addr add 10.99.0.1/24 dev tm0; ip -n $M link set tm0 up; ip -n $M link set lo up
ip -n $C addr add 10.99.0.2/24 dev tc0; ip -n $C link set tc0 up; ip -n $C link set lo up
ip netns exec $M python3 -m http.server 8443 --bind 127.0.0.1 >/dev/null 2>&1 &
sleep 1
t0=$(date +%s.%N)
ip netns exec $M bash -c "
  dpkg -i $deb >/dev/null
  cp /usr/share/doc/vipd/examples/dev.yaml /etc/vipd/vipd.yaml
  sed -i 's|192.0.2.50/24|10.99.0.50/24|' /etc/vipd/vipd.yaml
  vipd keygen > /etc/vipd/cluster.key && chmod 600 /etc/vipd/cluster.key && chown vipd: /etc/vipd/cluster.key
  vipd validate -config /etc/vipd/vipd.yaml >/dev/null
  setpriv --reuid=vipd --regid=vipd --init-groups --inh-caps=+net_admin,+net_raw --ambient-caps=+net_admin,+net_raw \
    /usr/bin/vipd agent -config /etc/vipd/vipd.yaml >/tmp/tryit-agent.log 2>&1 &
"
t1=$(date +%s.%N)
for i in $(seq 1 600); do
  if ip netns exec $C curl -s -m 0.5 -o /dev/null -w '%{http_code}' http://10.99.0.50:6443/ 2>/dev/null | grep -q 200; then
    t2=$(date +%s.%N)
    printf 'install + configure + start (the guide'"'"'s commands): %.2f s; to the first answer through the VIP: %.2f s\n' "$(echo "$t1-$t0" | bc)" "$(echo "$t2-$t0" | bc)"
    ip netns exec $M vipd members | head -3
    exit 0
  fi
  sleep 0.1
done
echo "no answer through the VIP within 60 s"; tail -20 /tmp/tryit-agent.log; exit 1
