#!/bin/sh
# vipd package: after removal (deb postrm "remove"/"purge"...; rpm %postun with $1 = 0 on erase, 1 on
# upgrade). Makes systemd forget the unit. Purge (deb only) also deletes the node's state: Raft's data in
# /var/lib/vipd and everything in /etc/vipd, the cluster key and certificates included. The vipd user stays,
# as Debian leaves system users (files elsewhere may still belong to it).
set -e

case "$1" in
remove | purge | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl reset-failed vipd.service >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/vipd /etc/vipd
fi
exit 0
