#!/bin/sh
# pkg-version.sh VERSION: the .deb/.rpm version for a `git describe --tags --always --dirty` string, ordered
# the way dpkg and rpm compare versions:
#   v0.3.0            -> 0.3.0
#   v0.3.0-4-gabc1234 -> 0.3.0+4.gabc1234   (4 commits after v0.3.0: sorts after it)
#   v0.4.0-rc1        -> 0.4.0~rc1          (a pre-release: sorts before 0.4.0)
#   abc1234-dirty     -> 0.0.0+git.abc1234.dirty (no tag yet)
set -eu
v=${1:?usage: pkg-version.sh VERSION}
case $v in
v[0-9]*.[0-9]* | [0-9]*.[0-9]*)
	v=${v#v}
	printf '%s\n' "$v" | sed -E 's/-dirty$/.dirty/; s/-([0-9]+)-g([0-9a-f]+)/+\1.g\2/; s/-/~/g'
	;;
*)
	printf '0.0.0+git.%s\n' "$v" | sed -E 's/-dirty$/.dirty/; s/[^A-Za-z0-9.+~]/./g'
	;;
esac
