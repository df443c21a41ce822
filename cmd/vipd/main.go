// Command vipd is one binary per load-balancer node: an L4 proxy in front of the Kubernetes API servers, their
// health checks, and a Raft cluster that gives a virtual IP to exactly one healthy node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const topUsage = `vipd: a virtual IP and L4 load balancer for control planes, in one binary.

Usage:
  vipd agent -listen :6443 -backend host:port … [-join peer …] [-vip 10.0.0.50/24]   run this node
  vipd validate [agent flags]                                                          check a configuration, start nothing
  vipd members [-http-addr 127.0.0.1:7948] [-format table|json]                        list the cluster's nodes
  vipd status  [-http-addr 127.0.0.1:7948] [-format table|json]                        this node's Raft state
  vipd reload  [-http-addr 127.0.0.1:7948]                                             re-read the config (as SIGHUP does)
  vipd backend drain|enable FRONTEND ADDR                                              take a backend out of service, or back
  vipd leave   [-http-addr 127.0.0.1:7948]                                             leave gracefully and stop
  vipd force-leave [-http-addr …] NODE                                                 remove a failed node from Raft
  vipd recover -data-dir DIR -peer NODE=IP:PORT …                                      offline: rewrite Raft peers after losing a majority
  vipd keygen                                                                          print a new cluster key (-encrypt-file)
  vipd keyring -list | -install KEY | -use KEY | -remove KEY                           rotate the cluster key, cluster-wide
  vipd tls ca create | cert create -node NAME …                                        a small CA and node certificates
  vipd version

Run "vipd COMMAND -h" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code: 0 success, 1 runtime failure, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "agent":
		err = runAgent(ctx, rest, stdout, stderr)
	case "validate":
		err = runValidate(rest, stdout)
	case "reload":
		err = runReload(ctx, rest, stdout)
	case "backend":
		err = runBackend(ctx, rest, stdout)
	case "members":
		err = runMembers(ctx, rest, stdout)
	case "status":
		err = runStatus(ctx, rest, stdout)
	case "leave":
		err = runLeave(ctx, rest, stdout)
	case "force-leave":
		err = runForceLeave(ctx, rest, stdout)
	case "recover":
		err = runRecover(rest, stdout)
	case "keygen":
		err = runKeygen(rest, stdout)
	case "keyring":
		err = runKeyring(ctx, rest, stdout)
	case "tls":
		err = runTLS(rest, stdout)
	case "version", "-version", "--version":
		bi := buildInfo()
		fmt.Fprintf(stdout, "vipd %s (commit %s, %s)\n", bi.Version, bi.Commit, bi.GoVersion)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, topUsage)
	default:
		fmt.Fprintf(stderr, "vipd: unknown command %q\n\n%s", cmd, topUsage)
		return 2
	}
	return exitCode(err, stderr)
}

func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, ue.msg)
		return 2
	default:
		fmt.Fprintf(stderr, "vipd: %v\n", err)
		return 1
	}
}
