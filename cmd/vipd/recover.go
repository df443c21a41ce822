package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vipd/vipd/cluster"
)

// runRecover is the offline runbook for a cluster that lost a majority of its voters for good: on every
// survivor, with its agent stopped, rewrite Raft's configuration to the survivors, then start them again.
func runRecover(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vipd recover", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dataDir := fs.String("data-dir", "", "the stopped agent's -data-dir")
	var peerArgs []string
	fs.Var(&listFlag{dst: &peerArgs}, "peer", "a surviving voter as NODE=IP:RAFTPORT; repeatable, include this node")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, recoverUsage, fs)
			return err
		}
		return usageError{fmt.Sprintf("vipd recover: %v (see vipd recover -h)", err)}
	}
	if *dataDir == "" {
		return usageError{"vipd recover: -data-dir is required: the stopped agent's data directory"}
	}
	if len(peerArgs) == 0 {
		return usageError{"vipd recover: give every surviving voter with -peer NODE=IP:PORT (this node included)"}
	}
	peers := make([]cluster.Peer, 0, len(peerArgs))
	for _, p := range peerArgs {
		name, addr, ok := strings.Cut(p, "=")
		if !ok || name == "" || addr == "" {
			return usageError{fmt.Sprintf("vipd recover: -peer %q: want NODE=IP:PORT, e.g. -peer lb1=10.0.0.11:7947", p)}
		}
		peers = append(peers, cluster.Peer{Name: name, Addr: addr})
	}
	if err := cluster.Recover(*dataDir, peers); err != nil {
		if errors.Is(err, cluster.ErrInvalidConfig) {
			return usageError{"vipd recover: " + err.Error()}
		}
		return fmt.Errorf("recover %s: %w", *dataDir, err)
	}
	fmt.Fprintf(stdout, "recovered %s: Raft configuration is now %s; start the agents of these nodes again\n",
		*dataDir, strings.Join(peerArgs, ", "))
	return nil
}

const recoverUsage = `Usage: vipd recover -data-dir DIR -peer NODE=IP:PORT [-peer …]

Offline recovery after a majority of voters is lost for good. Stop the agent on every survivor, run this on each
with the same -peer list (the survivors, with their Raft address, port 7947 by default), then start them again.
Never run it while the old majority could come back: two clusters would form.

Flags:
`
