# package.mk: the .deb and .rpm (issue 11), included by the top Makefile (which defines GO, BIN and VERSION).
# nfpm is a tool dependency pinned in go.mod (`go tool nfpm`, like staticcheck): nothing is fetched at run time.
#
#   make package       $(DIST)/vipd_<version>-1_<arch>.deb and $(DIST)/vipd-<version>-1.<arch>.rpm from the
#                      static binary of `make build`
#   make test-package  builds them, lists and asserts their contents and scripts, runs systemd-analyze verify
#                      on the unit, installs the .deb here (dpkg -i, in a throwaway network namespace so the
#                      ARP sysctls it applies do not touch this host), checks the user, directories and modes,
#                      runs the installed `vipd validate` on the shipped /etc/vipd/vipd.yaml, then purges it.
#                      Needs root (skips with a message otherwise), dpkg-deb, rpm and systemd-analyze.
DIST        ?= $(BIN)/pkg
PKG_ARCH    ?= $(shell $(GO) env GOARCH)
PKG_VERSION ?= $(shell packaging/pkg-version.sh '$(VERSION)')
# Reproducible packages: file times are the commit's, not the build's.
PKG_EPOCH   ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
NFPM        := VIPD_PKG_VERSION='$(PKG_VERSION)' VIPD_PKG_ARCH='$(PKG_ARCH)' VIPD_BIN='$(BIN)/vipd' \
               SOURCE_DATE_EPOCH='$(PKG_EPOCH)' $(GO) tool nfpm

.PHONY: package test-package

package: build
	@mkdir -p $(DIST)
	rm -f $(DIST)/vipd_*.deb $(DIST)/vipd-*.rpm
	$(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DIST)/
	$(NFPM) package --config packaging/nfpm.yaml --packager rpm --target $(DIST)/
	@ls -l $(DIST)/vipd_*.deb $(DIST)/vipd-*.rpm

test-package: package
	VIPD_PKG_DIR=$(abspath $(DIST)) $(GO) test -count=1 -timeout 10m -v -run 'TestPackage' ./packaging/
