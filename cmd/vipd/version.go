package main

import (
	"runtime/debug"

	"github.com/vipd/vipd/agent"
)

// version and commit are set at build time by the Makefile (-ldflags "-X main.version=… -X main.commit=…",
// from git); a plain `go build` falls back to what Go stamps into the binary (with -buildvcs).
var version, commit = "", ""

// buildInfo is what this binary says about itself: the version, the commit it was built from (Go stamps the
// VCS revision into every binary built in a checkout; "-dirty" marks uncommitted changes) and the Go release.
func buildInfo() agent.BuildInfo {
	bi := agent.BuildInfo{Version: version, Commit: commit, GoVersion: "unknown"}
	if bi.Commit == "" {
		bi.Commit = "unknown"
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if bi.Version == "" {
			bi.Version = "dev"
		}
		return bi
	}
	bi.GoVersion = info.GoVersion
	if bi.Version == "" {
		bi.Version = info.Main.Version
		if bi.Version == "" || bi.Version == "(devel)" {
			bi.Version = "dev"
		}
	}
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && commit == "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		bi.Commit = rev
	}
	return bi
}
