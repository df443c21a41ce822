// Package packaging holds what turns vipd into an installable daemon (nfpm.yaml, vipd.service, the sysctl
// drop-in, the example /etc/vipd/vipd.yaml, the maintainer scripts) and their tests: the package test
// (`make test-package`: contents, systemd-analyze verify, install, validate, purge) and the monitoring test,
// which scrapes a running agent for every metric docs/monitoring's alert rules and dashboard use. The package
// has no code of its own.
package packaging
