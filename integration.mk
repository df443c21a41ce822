# Targets of the docker-compose setup (issue 5), included by the top Makefile.
# compose 1.29 builds with the legacy builder: BuildKit stays off, and no image is ever pulled.
# Host needs: Docker, docker-compose 1.29, and for the suite root, nsenter (util-linux) and iptables.
COMPOSE ?= docker-compose
COMPOSE_ENV := COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0
DEMO_PROJECT ?= vipd

.PHONY: images integration demo demo-down

# images: the FROM scratch images of vipd and the fake apiserver (vipd-agent:dev, vipd-apiserver:dev), from
# the static binaries of `make build`.
images: build
	$(COMPOSE_ENV) $(COMPOSE) build

# integration: the failover suite (needs root, Docker and docker-compose; builds its own binaries and images,
# under a unique compose project it removes afterwards, even on failure or Ctrl-C). A missing prerequisite
# fails here instead of skipping. VIPD_IT_TRIALS=n sets the trials of the repeated scenarios.
integration:
	VIPD_IT_REQUIRE=1 $(GO) test -tags integration -count=1 -timeout 30m -v ./integration/

# demo: the README's "run" command; leaves the cluster running.
demo:
	VIPD_PROJECT=$(DEMO_PROJECT) integration/demo.sh

# demo-down: removes the demo's containers, networks and images.
demo-down:
	$(COMPOSE) -p $(DEMO_PROJECT) down -v --remove-orphans
	@for i in vipd-agent:dev vipd-apiserver:dev; do \
		if docker image inspect $$i >/dev/null 2>&1; then docker rmi $$i >/dev/null && echo "removed image $$i"; fi; \
	done
	@# untagged leftovers of earlier demo builds (a rebuild moves the tag to the new image)
	@docker image prune -f --filter label=io.github.vipd.image >/dev/null
