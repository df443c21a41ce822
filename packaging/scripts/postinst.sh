#!/bin/sh
# vipd package: after install or upgrade (deb postinst "configure [old-version]"; rpm %post with $1 = 1 on
# install, 2 on upgrade). Creates the vipd user and /etc/vipd, applies the ARP sysctls, tells systemd about the
# unit. It never enables or starts the agent: a node runs only once the operator has configured it. After an
# upgrade it restarts an agent that was running (a graceful stop: VIP handed over, then back in the cluster).
set -e

case "$1" in
configure) upgrade=${2:+yes} ;;          # deb: $2 is the version replaced, empty on a fresh install
[0-9]*) [ "$1" -ge 2 ] && upgrade=yes ;; # rpm: number of versions installed after this one
*) exit 0 ;;                             # deb abort-upgrade, abort-remove...: nothing to configure
esac

if ! getent group vipd >/dev/null; then
	groupadd --system vipd
fi
if ! getent passwd vipd >/dev/null; then
	useradd --system --gid vipd --home-dir /var/lib/vipd --no-create-home \
		--shell /usr/sbin/nologin --comment "vipd agent" vipd
fi

# The agent reads its configuration and keys here as vipd; nobody else may.
install -d -o root -g vipd -m 0750 /etc/vipd
chown root:vipd /etc/vipd/vipd.yaml
chmod 0640 /etc/vipd/vipd.yaml

# The kernel must never answer ARP for the VIP (it lives on lo): apply the drop-in now, not at the next boot.
if [ -x /usr/lib/systemd/systemd-sysctl ]; then
	/usr/lib/systemd/systemd-sysctl /usr/lib/sysctl.d/60-vipd.conf || echo "vipd: could not apply /usr/lib/sysctl.d/60-vipd.conf; run sysctl --system" >&2
elif [ -x /lib/systemd/systemd-sysctl ]; then
	/lib/systemd/systemd-sysctl /usr/lib/sysctl.d/60-vipd.conf || echo "vipd: could not apply /usr/lib/sysctl.d/60-vipd.conf; run sysctl --system" >&2
elif command -v sysctl >/dev/null; then
	sysctl -q -p /usr/lib/sysctl.d/60-vipd.conf || echo "vipd: could not apply /usr/lib/sysctl.d/60-vipd.conf; run sysctl --system" >&2
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ "$upgrade" = yes ]; then
		systemctl try-restart vipd.service || echo "vipd: restart after upgrade failed: systemctl status vipd" >&2
	fi
fi
exit 0
