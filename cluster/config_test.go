package cluster

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
	"github.com/vipd/vipd/internal/pki"
)

// TestNewValidation is the bad-input table of Config: every refusal is a *fielderr.Error naming the field
// (never a flag), wrapping ErrInvalidConfig, and New reads every file before anything listens.
func TestNewValidation(t *testing.T) {
	dir := t.TempDir()
	keyFile := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := keyFile("good.key", base64.StdEncoding.EncodeToString(testKey)+"\n", 0o600)
	worldReadable := keyFile("world.key", base64.StdEncoding.EncodeToString(testKey), 0o644)
	groupReadable := keyFile("group.key", base64.StdEncoding.EncodeToString(testKey), 0o640)
	notBase64 := keyFile("junk.key", "not base64 at all!", 0o600)
	shortKey := keyFile("short.key", base64.StdEncoding.EncodeToString([]byte("short")), 0o600)
	empty := keyFile("empty.key", "", 0o600)

	ok := Config{NodeName: "a", BindAddr: "127.0.0.1", DataDir: "/tmp/x", EncryptKey: testKey}
	for _, tt := range []struct {
		name  string
		mod   func(*Config)
		field string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.NodeName = "" }, "NodeName"},
		{"name with terminal escape", func(c *Config) { c.NodeName = "lb1\x1b[31m" }, "NodeName"},
		{"name with space", func(c *Config) { c.NodeName = "lb 1" }, "NodeName"},
		{"name 64 long", func(c *Config) { c.NodeName = strings.Repeat("a", 64) }, "NodeName"},
		{"name 63 long", func(c *Config) { c.NodeName = strings.Repeat("a", 63) }, ""},
		{"name with dot dash underscore", func(c *Config) { c.NodeName = "lb-1.dc_2" }, ""},
		{"bad bind", func(c *Config) { c.BindAddr = "host.example" }, "BindAddr"},
		{"wildcard bind without advertise", func(c *Config) { c.BindAddr = "0.0.0.0" }, "BindAddr"},
		{"wildcard bind with advertise", func(c *Config) { c.BindAddr, c.AdvertiseAddr = "0.0.0.0", "127.0.0.1" }, ""},
		{"wildcard advertise", func(c *Config) { c.AdvertiseAddr = "::" }, "AdvertiseAddr"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"dev without data dir", func(c *Config) { c.DataDir, c.Dev = "", true }, ""},
		{"dev with expect 3", func(c *Config) { c.Dev, c.BootstrapExpect = true, 3 }, "BootstrapExpect"},
		{"same ports", func(c *Config) { c.GossipPort, c.RaftPort = 8000, 8000 }, "RaftPort"},
		{"port range", func(c *Config) { c.RaftPort = 70000 }, "RaftPort"},
		{"gossip port range", func(c *Config) { c.GossipPort = -1 }, "GossipPort"},
		{"negative expect", func(c *Config) { c.BootstrapExpect = -1 }, "BootstrapExpect"},
		{"short key", func(c *Config) { c.EncryptKey = make([]byte, 10) }, "EncryptKey"},
		{"24-byte key", func(c *Config) { c.EncryptKey = make([]byte, 24) }, ""},
		{"bad join", func(c *Config) { c.Join = []string{"10.0.0.2", ":7946"} }, "Join[1]"},
		{"join host", func(c *Config) { c.Join = []string{"lb2", "10.0.0.3:8000", "::1"} }, ""},
		{"lease > heartbeat", func(c *Config) { c.LeaseTimeout = 200 * time.Millisecond }, "LeaseTimeout"},
		{"heartbeat > election", func(c *Config) { c.HeartbeatTimeout = 300 * time.Millisecond }, "HeartbeatTimeout"},
		{"below minimum", func(c *Config) { c.LeaseTimeout = 10 * time.Millisecond }, "LeaseTimeout"},
		{"above maximum", func(c *Config) { c.ElectionTimeout = 2 * time.Minute }, "ElectionTimeout"},
		{"heartbeat in seconds by mistake", func(c *Config) {
			c.HeartbeatTimeout, c.ElectionTimeout = 100*time.Second, 100*time.Second
		}, "HeartbeatTimeout"},
		{"all equal", func(c *Config) {
			c.LeaseTimeout, c.HeartbeatTimeout, c.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		}, ""},
		{"negative reap", func(c *Config) { c.ReapAfter = -time.Second }, "ReapAfter"},
		{"reap 72h", func(c *Config) { c.ReapAfter = 72 * time.Hour }, ""},

		// Security: secure by default, insecure only when asked, files checked in New.
		{"no key, no TLS, not insecure", func(c *Config) { c.EncryptKey = nil }, "EncryptFile"},
		{"insecure", func(c *Config) { c.EncryptKey, c.Insecure = nil, true }, ""},
		{"insecure with key", func(c *Config) { c.Insecure = true }, "Insecure"},
		{"insecure with key file", func(c *Config) { c.EncryptKey, c.EncryptFile, c.Insecure = nil, good, true }, "Insecure"},
		{"insecure with TLS", func(c *Config) {
			c.EncryptKey, c.Insecure, c.TLS = nil, true, pki.Files{CA: "ca", Cert: "c", Key: "k"}
		}, "Insecure"},
		{"key and key file", func(c *Config) { c.EncryptFile = good }, "EncryptFile"},
		{"key file", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, good }, ""},
		{"key file missing", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, filepath.Join(dir, "nope") }, "EncryptFile"},
		{"key file world-readable", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, worldReadable }, "EncryptFile"},
		{"key file group-readable", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, groupReadable }, "EncryptFile"},
		{"key file not base64", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, notBase64 }, "EncryptFile"},
		{"key file short key", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, shortKey }, "EncryptFile"},
		{"key file empty", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, empty }, "EncryptFile"},
		{"key file is a directory", func(c *Config) { c.EncryptKey, c.EncryptFile = nil, dir }, "EncryptFile"},
		{"TLS without key file", func(c *Config) { c.EncryptKey, c.TLS = nil, pki.Files{CA: "ca", Cert: "c"} }, "TLS.Key"},
		{"TLS without CA", func(c *Config) { c.TLS = pki.Files{Cert: "c", Key: "k"} }, "TLS.CA"},
		{"dev without security", func(c *Config) { c.EncryptKey, c.Dev = nil, true }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			c, err := New(cfg)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New: %v, want ok", err)
				}
				if c.mode == ModeInsecure && !cfg.Insecure {
					t.Errorf("mode %s without Insecure", c.mode)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error on %s", tt.field)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
			fe, ok := fielderr.As(err)
			if !ok || fe.Field != tt.field {
				t.Fatalf("err = %v, want a field error on %s", err, tt.field)
			}
			if flagLike.MatchString(fe.Msg) {
				t.Errorf("message names a flag, not a field: %q", fe.Msg)
			}
			t.Log(err)
		})
	}
}

// flagLike matches a flag name ("-raft-lease", "-node") in a message: components name fields, the agent
// renders flags.
var flagLike = regexp.MustCompile(`(^|[\s(])-[a-z]`)

// TestSecurityModes: the mode follows the configuration, and Dev without security makes a throw-away key.
func TestSecurityModes(t *testing.T) {
	base := Config{NodeName: "a", BindAddr: "127.0.0.1", DataDir: "/tmp/x"}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want SecurityMode
	}{
		{"key", func(c *Config) { c.EncryptKey = testKey }, ModeKey},
		{"insecure", func(c *Config) { c.Insecure = true }, ModeInsecure},
		{"dev", func(c *Config) { c.Dev, c.DataDir = true, "" }, ModeKey},
		{"dev insecure", func(c *Config) { c.Dev, c.DataDir, c.Insecure = true, "", true }, ModeInsecure},
	} {
		cfg := base
		tt.mod(&cfg)
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if c.mode != tt.want || c.Status().Security != tt.want {
			t.Errorf("%s: mode %s, want %s", tt.name, c.mode, tt.want)
		}
		if tt.want == ModeKey && len(c.cfg.EncryptKey) != 32 && c.cfg.EncryptKey == nil {
			t.Errorf("%s: no key", tt.name)
		}
	}
}

// TestTimingErrorsNameFields checks that timing errors name the field and value an operator must change.
func TestTimingErrorsNameFields(t *testing.T) {
	for _, tt := range []struct {
		hb, el, lease time.Duration
		field, value  string
	}{
		{100 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, "LeaseTimeout", "150ms"},
		{200 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond, "HeartbeatTimeout", "200ms"},
		{100 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, "ElectionTimeout", "10ms"},
		{100 * time.Millisecond, 61 * time.Second, 50 * time.Millisecond, "ElectionTimeout", "1m1s"},
	} {
		err := validateTimings(tt.hb, tt.el, tt.lease)
		fe, ok := fielderr.As(err)
		if !ok || fe.Field != tt.field || !strings.Contains(fe.Msg, tt.value) {
			t.Errorf("validateTimings(%v,%v,%v) = %v, want field %s and value %s", tt.hb, tt.el, tt.lease, err, tt.field, tt.value)
		}
	}
	if DefaultLease > DefaultHeartbeat || DefaultHeartbeat > DefaultElection {
		t.Error("defaults violate lease ≤ heartbeat ≤ election")
	}
}

func TestJoinAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":       "10.0.0.1:7946",
		"10.0.0.1:8000":  "10.0.0.1:8000",
		"lb2":            "lb2:7946",
		"::1":            "[::1]:7946",
		"[fe80::1]:9000": "[fe80::1]:9000",
	} {
		got, err := joinAddr(in, 7946)
		if err != nil || got != want {
			t.Errorf("joinAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ":7946", "host:"} {
		if _, err := joinAddr(bad, 7946); err == nil {
			t.Errorf("joinAddr(%q) succeeded", bad)
		}
	}
}

func TestParseStdLine(t *testing.T) {
	for _, tt := range []struct {
		in   string
		lv   slog.Level
		want string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4", slog.LevelDebug, "Stream connection from=1.2.3.4"},
		{"[WARN] memberlist: Was able to connect", slog.LevelWarn, "Was able to connect"},
		{"[ERR] memberlist: Conflicting address for n2", slog.LevelError, "Conflicting address for n2"},
		{"[INFO] memberlist: Marking n3 as failed", slog.LevelInfo, "Marking n3 as failed"},
		{"no prefix at all", slog.LevelInfo, "no prefix at all"},
	} {
		lv, msg := parseStdLine(tt.in)
		if lv != tt.lv || msg != tt.want {
			t.Errorf("parseStdLine(%q) = %v %q, want %v %q", tt.in, lv, msg, tt.lv, tt.want)
		}
	}
}

func TestMetaFitsAndRoundTrips(t *testing.T) {
	m := wireMeta{Meta: Meta{Healthy: true, ListenerUp: true, HealthyBackends: 1000, TotalBackends: 1000,
		RaftAddr: "[2001:db8:1234:5678:9abc:def0:1234:5678]:7947", Version: strings.Repeat("v", 64), Witness: true,
		Priority: 100, VIPHeld: true}, Bootstrap: 5, HasState: true, Leaving: true}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	got, err := decodeMeta(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	m.Version = strings.Repeat("v", 600)
	if _, err := encodeMeta(m); err == nil {
		t.Error("oversized meta accepted")
	}
}

func TestFanoutLatestValue(t *testing.T) {
	f := newFanout()
	a, cancelA := f.subscribe()
	defer cancelA()
	if v := <-a; v.Leader {
		t.Fatal("initial value true")
	}
	f.publish(true, 2)
	f.publish(false, 2)
	f.publish(true, 3) // a slow reader sees only the newest value, and its term tells it is a new leadership
	if v := <-a; v != (LeaderState{Leader: true, Term: 3}) {
		t.Fatalf("got %+v, want the newest {true 3}", v)
	}
	select {
	case v := <-a:
		t.Fatalf("extra value %v", v)
	default:
	}
	b, cancelB := f.subscribe()
	if v := <-b; !v.Leader || v.Term != 3 {
		t.Errorf("late subscriber got %+v, want the current value", v)
	}
	cancelB()
	f.publish(false, 3) // must not block on an unsubscribed channel
	if v := <-a; v.Leader {
		t.Error("missed false")
	}
}
