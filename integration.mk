# Targets of the docker-compose setup (issue 5), included by the top Makefile.
# compose 1.29 builds with the legacy builder: BuildKit stays off, and no image is ever pulled.
COMPOSE ?= docker-compose
COMPOSE_ENV := COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0

.PHONY: images integration demo demo-down

# images: the FROM scratch images of vipd and the fake apiserver, from the static binaries of `make build`.
images:
	$(MAKE) build
	$(COMPOSE_ENV) $(COMPOSE) build

# integration: the failover suite (needs root, Docker and docker-compose; builds its own binaries and images,
# under a unique compose project it removes afterwards).
integration:
	$(GO) test -tags integration -count=1 -timeout 15m -v ./integration/

# demo: the README's "run" command; leaves the cluster running.
demo:
	integration/demo.sh

demo-down:
	$(COMPOSE) -p vipd down -v --rmi all --remove-orphans
