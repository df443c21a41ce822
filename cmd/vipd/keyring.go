package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"

	"github.com/vipd/vipd/agent"
)

const keyringUsage = `Usage: vipd keyring -list | -install KEY | -use KEY | -remove KEY [-http-addr A] [-http-token-file F]

Rotates the cluster key with no downtime, cluster-wide, from any node (Consul's procedure): install the new
key everywhere, make it the primary, then remove the old one. Each step goes through the Raft log; -use is
refused until every alive node holds the key, -remove while any alive node still uses it as primary.
Keys are base64, as vipd keygen prints them; -list shows fingerprints, never keys.

Flags:
`

func runKeyring(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vipd keyring", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf clientFlags
	fs.StringVar(&cf.httpAddr, "http-addr", "127.0.0.1:7948", "admin API address of the local agent")
	fs.StringVar(&cf.tokenFile, "http-token-file", os.Getenv("VIPD_HTTP_TOKEN_FILE"), "file with the agent's admin token (default $VIPD_HTTP_TOKEN_FILE)")
	list := fs.Bool("list", false, "list the installed keys by fingerprint, with how many nodes hold and use each")
	install := fs.String("install", "", "install `KEY` on every node (accepted, not yet used)")
	use := fs.String("use", "", "make the installed `KEY` the primary on every node")
	remove := fs.String("remove", "", "remove `KEY` from every node")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, keyringUsage, fs)
			return err
		}
		return usageError{fmt.Sprintf("vipd keyring: %v (see vipd keyring -h)", err)}
	}
	var req agent.KeyringRequest
	n := 0
	for op, key := range map[string]string{"install": *install, "use": *use, "remove": *remove} {
		if key != "" {
			req, n = agent.KeyringRequest{Op: op, Key: key}, n+1
		}
	}
	if *list {
		n++
	}
	if n != 1 || fs.NArg() > 0 {
		return usageError{"vipd keyring: give exactly one of -list, -install KEY, -use KEY, -remove KEY (see vipd keyring -h)"}
	}
	if *list {
		var resp agent.KeyringResponse
		if err := apiCall(ctx, http.MethodGet, cf, "/v1/keyring", nil, &resp); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tINSTALLED\tPRIMARY")
		for _, k := range resp.Keys {
			fmt.Fprintf(tw, "%s\t%d/%d\t%d/%d\n", k.Fingerprint, k.InstalledOn, resp.Nodes, k.PrimaryOn, resp.Nodes)
		}
		return tw.Flush()
	}
	if err := apiCall(ctx, http.MethodPost, cf, "/v1/keyring", req, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: committed; every node applies it (vipd keyring -list shows it spread)\n", req.Op)
	return nil
}
