package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/vipd/vipd/agent"
)

// clientFlags are the flags every command that talks to a running agent shares.
type clientFlags struct {
	httpAddr  string
	tokenFile string
	format    string
}

func parseClientFlags(name string, args []string, stdout io.Writer, withFormat bool) (clientFlags, []string, error) {
	var cf clientFlags
	fs := flag.NewFlagSet("vipd "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cf.httpAddr, "http-addr", "127.0.0.1:7948", "admin API address of the local agent")
	fs.StringVar(&cf.tokenFile, "http-token-file", os.Getenv("VIPD_HTTP_TOKEN_FILE"), "file with the agent's admin token (needed for changes when its admin API is not on loopback; default $VIPD_HTTP_TOKEN_FILE)")
	if withFormat {
		fs.StringVar(&cf.format, "format", "table", "output format: table or json")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, fmt.Sprintf("Usage: vipd %s [flags]\n\nFlags:\n", name), fs)
			return cf, nil, err
		}
		return cf, nil, usageError{fmt.Sprintf("vipd %s: %v (see vipd %s -h)", name, err, name)}
	}
	if withFormat && cf.format != "table" && cf.format != "json" {
		return cf, nil, usageError{fmt.Sprintf("vipd %s: -format: %q is not table or json", name, cf.format)}
	}
	return cf, fs.Args(), nil
}

// apiCall asks the local agent's admin API; a connection error says how to reach the agent. A POST sends in
// as its JSON body (the API refuses changes in any other form) with the bearer token of -http-token-file.
func apiCall(ctx context.Context, method string, cf clientFlags, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr := cf.httpAddr
	var reqBody io.Reader
	if method == http.MethodPost {
		if in == nil {
			in = struct{}{}
		}
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s: %w", path, err)
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, reqBody)
	if err != nil {
		return usageError{fmt.Sprintf("vipd: -http-addr %q: %v", addr, err)}
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	if cf.tokenFile != "" {
		tok, err := os.ReadFile(cf.tokenFile)
		if err != nil {
			return usageError{fmt.Sprintf("vipd: -http-token-file: %v", err)}
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent's admin API at %s (is `vipd agent` running? set -http-addr): %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, path, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	if text, ok := out.(*string); ok { // a plain-text answer
		*text = strings.TrimSpace(string(body))
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func runMembers(ctx context.Context, args []string, stdout io.Writer) error {
	cf, _, err := parseClientFlags("members", args, stdout, true)
	if err != nil {
		return err
	}
	var resp agent.MembersResponse
	if err := apiCall(ctx, http.MethodGet, cf, "/v1/members", nil, &resp); err != nil {
		return err
	}
	if cf.format == "json" {
		return writeJSON(stdout, resp)
	}
	writeMembersTable(stdout, resp)
	return nil
}

func writeMembersTable(w io.Writer, resp agent.MembersResponse) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATUS\tROLE\tHEALTH\tVIP\tVERSION\tSECURITY")
	for _, m := range resp.Members {
		name := printable(m.Name)
		if m.Leader {
			name += " *"
		}
		vip := ""
		if m.VIPHeld {
			vip = "holder"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, printable(m.Addr), printable(m.Status), printable(m.Role), healthText(m), vip,
			printable(m.Version), securityText(m.Security))
	}
	tw.Flush()
	if resp.Note != "" {
		fmt.Fprintf(w, "\n%s\n", plainText(resp.Note)) // prose that may quote a name (the leader's)
	}
}

func healthText(m agent.Member) string {
	switch {
	case m.Witness:
		return "witness"
	case m.Status != "alive" && m.Status != "suspect":
		return "-"
	case !m.ListenerUp:
		return "unhealthy (listener down)"
	case m.Healthy:
		return fmt.Sprintf("healthy %d/%d", m.HealthyBackends, m.TotalBackends)
	}
	return fmt.Sprintf("unhealthy %d/%d", m.HealthyBackends, m.TotalBackends)
}

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	cf, _, err := parseClientFlags("status", args, stdout, true)
	if err != nil {
		return err
	}
	var st agent.StatusResponse
	if err := apiCall(ctx, http.MethodGet, cf, "/v1/status", nil, &st); err != nil {
		return err
	}
	if cf.format == "json" {
		return writeJSON(stdout, st)
	}
	return writeStatus(stdout, st)
}

// writeStatus renders `vipd status`. Every string came from the agent, and many from the network (the
// leader's name is whatever the leader's Raft RPCs claimed): each is escaped before it reaches the terminal.
func writeStatus(w io.Writer, st agent.StatusResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	leader := printable(st.Leader)
	if st.Leader == "" {
		leader = "none"
	}
	vips := make([]string, len(st.VIPs))
	for i, v := range st.VIPs {
		vips[i] = printable(v)
	}
	rows := [][2]string{
		{"Node", printable(st.Node)},
		{"Cluster ID", printable(st.ClusterID)},
		{"Role", printable(st.Role)},
		{"Leader", strings.TrimSpace(leader + " " + printable(st.LeaderAddr))},
		{"Term", fmt.Sprint(st.Term)},
		{"Last contact", st.LastContact.String()},
		{"Commit index", fmt.Sprint(st.CommitIndex)},
		{"Applied index", fmt.Sprint(st.AppliedIndex)},
		{"Voters", fmt.Sprint(st.Voters)},
		{"VIPs", strings.Join(vips, ", ")},
		{"VIP held", fmt.Sprint(st.VIPHeld)},
		{"Healthy", strings.TrimSpace(fmt.Sprint(st.Healthy) + " " + plainText(st.HealthReason))},
		{"Version", printable(st.Version)},
		{"Security", securityText(st.Security)},
		{"Refused peers", fmt.Sprint(st.Refused)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Problem != "" {
		fmt.Fprintf(w, "\nProblem: %s\n", plainText(st.Problem))
	}
	return nil
}

func runLeave(ctx context.Context, args []string, stdout io.Writer) error {
	cf, _, err := parseClientFlags("leave", args, stdout, false)
	if err != nil {
		return err
	}
	var answer string
	if err := apiCall(ctx, http.MethodPost, cf, "/v1/leave", nil, &answer); err != nil {
		return err
	}
	if answer == "draining" {
		// The agent answers before its hand-over drain, which may last until its -drain-timeout.
		fmt.Fprintln(stdout, "handed the VIP over; the agent serves the open connections through it until they finish (at most -drain-timeout), then leaves the cluster and exits")
		return nil
	}
	fmt.Fprintln(stdout, "left the cluster; the agent is shutting down")
	return nil
}

func runForceLeave(ctx context.Context, args []string, stdout io.Writer) error {
	cf, rest, err := parseClientFlags("force-leave", args, stdout, false)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{"vipd force-leave: name exactly one failed node: vipd force-leave NODE"}
	}
	if err := apiCall(ctx, http.MethodPost, cf, "/v1/force-leave", agent.ForceLeaveRequest{Node: rest[0]}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s from the cluster\n", rest[0])
	return nil
}

func runKeygen(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError{"vipd keygen: takes no arguments"}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("read random key: %w", err)
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runReload(ctx context.Context, args []string, stdout io.Writer) error {
	cf, rest, err := parseClientFlags("reload", args, stdout, false)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{"vipd reload: takes no arguments (the agent re-reads the -config file and flags it was started with)"}
	}
	if err := apiCall(ctx, http.MethodPost, cf, "/v1/reload", nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "reloaded")
	return nil
}

// runBackend is `vipd backend drain|enable FRONTEND ADDR`: take one backend out of service for maintenance
// (no new connections; open ones continue; still checked), or put it back.
func runBackend(ctx context.Context, args []string, stdout io.Writer) error {
	cf, rest, err := parseClientFlags("backend", args, stdout, false)
	if err != nil {
		return err
	}
	if len(rest) != 3 || (rest[0] != "drain" && rest[0] != "enable") {
		return usageError{"vipd backend: usage: vipd backend drain|enable FRONTEND ADDR (the frontend is \"default\" without frontends: in the config)"}
	}
	req := agent.DrainRequest{Frontend: rest[1], Backend: rest[2], Drain: rest[0] == "drain"}
	if err := apiCall(ctx, http.MethodPost, cf, "/v1/backends/drain", req, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%sd %s of frontend %s\n", strings.TrimSuffix(rest[0], "e"), rest[2], rest[1])
	return nil
}

// printable shows a name that came over the network as it is when it is plain, and quoted with escapes
// otherwise, so that no terminal control sequence a peer put in it ever reaches the operator's terminal.
func printable(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r > 0x7e || r == '"' || r == '\\' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// plainText shows the agent's prose (a note, a problem) as it is, except that control characters and invalid
// UTF-8, which only a name from the network could have brought in, are escaped.
func plainText(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// securityText shows how a node authenticates its peers; an unauthenticated one stands out.
func securityText(mode string) string {
	switch mode {
	case "insecure":
		return "INSECURE"
	case "":
		return "-"
	}
	return printable(mode)
}
