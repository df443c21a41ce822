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

.PHONY: all build test unit lint fmt-check vet staticcheck integration bench bench-failover demo images clean

all: build

include integration.mk bench.mk package.mk

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipd ./cmd/vipd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/apiserver ./integration/apiserver

# test is the README's test command: static checks, unit and namespace tests with -race, then the
# docker-compose suite.
test: lint unit integration

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

clean:
	rm -rf $(BIN)
