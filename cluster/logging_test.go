package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vipd/vipd/internal/testutil"
)

// fakeRaft stands for *raft.Raft: exported fields a JSON encoder would dump, and a String() hclog prints.
type fakeRaft struct {
	RestoreCommittedLogs bool
	addr                 string
}

func (r *fakeRaft) String() string { return "Node at " + r.addr + " [Leader]" }

type server struct {
	ID      string
	Address string
}

// unformatted finds a printf verb left in a string: "%+v", "%d", "%!s(MISSING)".
var unformatted = regexp.MustCompile(`%[-+# 0]*[0-9]*(\.[0-9]+)?[vdsqxXfgetTpbco]|%!`)

// TestHclogAdapterJSON logs what raft logs through the adapter under the agent's JSON handler and checks
// each defect of issue 10: component twice, a format string passed as a value, a struct dumped as JSON.
func TestHclogAdapterJSON(t *testing.T) {
	var nilRaft *fakeRaft
	cases := []struct {
		name string
		log  func(h hclog.Logger)
		want map[string]any // raft group's attributes as decoded JSON
		sub  string         // the subsystem attribute
	}{
		{
			name: "format string as a value",
			log: func(h hclog.Logger) {
				h.Info("updating configuration", "command", "AddVoter", "servers", hclog.Fmt("%+v", []server{{"lb1", "10.0.0.11:7947"}}))
			},
			want: map[string]any{"command": "AddVoter", "servers": "[{ID:lb1 Address:10.0.0.11:7947}]"},
			sub:  "raft",
		},
		{
			name: "Stringer with exported fields, key that the parent has",
			log: func(h hclog.Logger) {
				h.Info("entering leader state", "leader", &fakeRaft{addr: "10.0.0.11:7947"}, "node", "raft's own node value")
			},
			want: map[string]any{"leader": "Node at 10.0.0.11:7947 [Leader]", "node": "raft's own node value"},
			sub:  "raft",
		},
		{
			name: "struct without String",
			log:  func(h hclog.Logger) { h.Warn("config", "conf", struct{ RestoreCommittedLogs bool }{}) },
			want: map[string]any{"conf": "{RestoreCommittedLogs:false}"},
			sub:  "raft",
		},
		{
			name: "named, With args, a key given twice, an odd value, hclog number types",
			log: func(h hclog.Logger) {
				h.Named("transport").With("peer", "a", "n", 1).Error("failed", "peer", "b", "hex", hclog.Hex(255),
					"oct", hclog.Octal(8), "bin", hclog.Binary(5), "q", hclog.Quote("x\ny"), "err", errors.New("boom"),
					"took", 1500*time.Millisecond, "nil", nilRaft, "list", []string{"a", "b"}, "lonely")
			},
			want: map[string]any{"peer": "b", "n": 1.0, "hex": "0xff", "oct": "010", "bin": "0b101", "q": "x\ny",
				"err": "boom", "took": float64(1500 * time.Millisecond), "nil": "<nil>", "list": []any{"a", "b"},
				hclog.MissingKey: "lonely"},
			sub: "raft.transport",
		},
		{
			name: "no key/values: no empty group",
			log:  func(h hclog.Logger) { h.Named("snapshot").Info("nothing to say") },
			want: nil,
			sub:  "raft.snapshot",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			parent := slog.New(slog.NewJSONHandler(&buf, nil)).With("component", "cluster").With("node", "lb1")
			tc.log(newHclog(parent, "raft"))
			line := strings.TrimSpace(buf.String())
			if err := testutil.DuplicateJSONKeys(line); err != nil {
				t.Fatalf("%v in %s", err, line)
			}
			if m := unformatted.FindString(line); m != "" {
				t.Errorf("unformatted verb %q in %s", m, line)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("not JSON: %v: %s", err, line)
			}
			if got["component"] != "cluster" || got["node"] != "lb1" || got["subsystem"] != tc.sub {
				t.Errorf("component %v, node %v, subsystem %v; want cluster, lb1, %s: %s", got["component"], got["node"], got["subsystem"], tc.sub, line)
			}
			group, has := got["raft"].(map[string]any)
			if tc.want == nil {
				if has {
					t.Errorf("empty raft group logged: %s", line)
				}
				return
			}
			if fmt.Sprint(group) != fmt.Sprint(tc.want) {
				t.Errorf("raft attributes\n got %v\nwant %v\nline %s", group, tc.want, line)
			}
		})
	}
}

// TestHclogAdapterLevels checks that hclog levels map onto slog's and that disabled levels cost no record.
func TestHclogAdapterLevels(t *testing.T) {
	var buf bytes.Buffer
	h := newHclog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), "raft")
	h.Debug("hidden")
	h.Info("hidden")
	h.Warn("shown")
	h.Error("shown")
	if n := strings.Count(buf.String(), "hidden"); n != 0 {
		t.Errorf("%d records below the level logged: %s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `"level":"WARN"`) || !strings.Contains(buf.String(), `"level":"ERROR"`) {
		t.Errorf("levels: %s", buf.String())
	}
	if h.GetLevel() != hclog.Warn || h.IsInfo() || !h.IsWarn() {
		t.Errorf("GetLevel %v IsInfo %t IsWarn %t, want Warn false true", h.GetLevel(), h.IsInfo(), h.IsWarn())
	}
}

// TestStdLogWriter routes memberlist's log.Logger lines: level from the prefix, the "memberlist:" prefix
// dropped, and the subsystem under its own key, not a second component.
func TestStdLogWriter(t *testing.T) {
	cases := []struct {
		line, level, msg string
	}{
		{"[WARN] memberlist: Was able to connect to lb2 over TCP but UDP probes failed", "WARN", "Was able to connect to lb2 over TCP but UDP probes failed"},
		{"[DEBUG] memberlist: Stream connection from=10.0.0.12:40000", "DEBUG", "Stream connection from=10.0.0.12:40000"},
		{"[ERR] memberlist: Failed push/pull merge: boom", "ERROR", "Failed push/pull merge: boom"},
		{"no prefix at all: 100% done", "INFO", "no prefix at all: 100% done"},
	}
	for _, tc := range cases {
		var buf bytes.Buffer
		parent := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "cluster")
		newStdLogger(parent, "memberlist").Print(tc.line)
		line := strings.TrimSpace(buf.String())
		if err := testutil.DuplicateJSONKeys(line); err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if got["level"] != tc.level || got["msg"] != tc.msg || got["subsystem"] != "memberlist" || got["component"] != "cluster" {
			t.Errorf("%q logged as %s", tc.line, line)
		}
	}
}
