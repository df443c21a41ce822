#!/bin/sh
# vipd package: before removal (deb prerm "remove"/"upgrade"...; rpm %preun with $1 = 0 on erase, 1 on
# upgrade). On removal, stop the agent: a graceful stop releases the VIP, hands leadership to a healthy peer
# and leaves the cluster, so removing the package from a node removes the node (docs/operations.md). On an
# upgrade the agent keeps running until the new version's postinst restarts it.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl disable --now vipd.service >/dev/null 2>&1 || true
fi
exit 0
