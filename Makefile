# vipd — see README.md. Every target works on a fresh machine with Go and Docker.
GO        ?= go
BIN       := bin
PKGS      := ./...
# The version is the nearest tag (v0.3.0, v0.3.0-4-gabc1234 after it), the commit the checkout's; "-dirty"
# marks uncommitted changes. `vipd version`, vipd_build_info and `vipd members` show them.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell c=$$(git rev-parse --short=12 HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; echo $$c; } || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
export CGO_ENABLED := 0

.PHONY: all build test unit lint fmt-check vet staticcheck integration bench bench-failover demo images clean fuzz

all: build

include integration.mk bench.mk package.mk

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipd ./cmd/vipd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/apiserver ./integration/apiserver

# test is the README's test command: static checks, unit and namespace tests with -race, then the
# docker-compose suite.
test: lint unit fuzz-quick test-package integration

# fuzz-quick replays every fuzz target's corpus and fuzzes each for a few seconds (make fuzz is the long run).
.PHONY: fuzz-quick
fuzz-quick:
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration ./integration/...

staticcheck:
	$(GO) tool staticcheck $(PKGS)
	$(GO) tool staticcheck -tags integration ./integration/...

unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $(PKGS)

# fuzz runs every fuzz target of the module (each `func Fuzz…` in a _test.go file, found anew every run), one
# at a time as go test -fuzz requires, for FUZZTIME each; a crasher is written to the package's testdata/fuzz,
# where plain go test replays it from then on. `make fuzz FUZZTIME=3s` is the quick pass. .ci/fuzz-one runs a
# target again (up to twice) when Go 1.26's fuzz coordinator fails it at the deadline without an input (a Go bug).
FUZZTIME ?= 30s
fuzz:
	@failed=; n=0; start=$$(date +%s); \
	for file in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
		dir=$$(dirname $$file); \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			n=$$((n+1)); echo "== $$dir $$fn ($(FUZZTIME))"; \
			.ci/fuzz-one $(GO) $$dir $$fn $(FUZZTIME) || failed="$$failed $$dir:$$fn"; \
		done; \
	done; \
	echo "fuzz: $$n targets in $$(( $$(date +%s) - start ))s"; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

clean:
	rm -rf $(BIN)
