# vipd — see README.md. Every target works on a fresh machine with Go and Docker.
GO        ?= go
BIN       := bin
PKGS      := ./...
LDFLAGS   := -s -w
export CGO_ENABLED := 0

.PHONY: all build test unit lint fmt-check vet staticcheck integration bench bench-failover demo images clean

all: build

include integration.mk bench.mk

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
