package cluster

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNewValidation(t *testing.T) {
	ok := Config{NodeName: "a", BindAddr: "127.0.0.1", DataDir: "/tmp/x"}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"no name", func(c *Config) { c.NodeName = "" }, false},
		{"bad bind", func(c *Config) { c.BindAddr = "host.example" }, false},
		{"wildcard bind without advertise", func(c *Config) { c.BindAddr = "0.0.0.0" }, false},
		{"wildcard bind with advertise", func(c *Config) { c.BindAddr, c.AdvertiseAddr = "0.0.0.0", "127.0.0.1" }, true},
		{"no data dir", func(c *Config) { c.DataDir = "" }, false},
		{"dev without data dir", func(c *Config) { c.DataDir, c.Dev = "", true }, true},
		{"dev with expect 3", func(c *Config) { c.Dev, c.BootstrapExpect = true, 3 }, false},
		{"same ports", func(c *Config) { c.GossipPort, c.RaftPort = 8000, 8000 }, false},
		{"port range", func(c *Config) { c.RaftPort = 70000 }, false},
		{"negative expect", func(c *Config) { c.BootstrapExpect = -1 }, false},
		{"short key", func(c *Config) { c.EncryptKey = make([]byte, 10) }, false},
		{"32-byte key", func(c *Config) { c.EncryptKey = make([]byte, 32) }, true},
		{"bad join", func(c *Config) { c.Join = []string{":7946"} }, false},
		{"join host", func(c *Config) { c.Join = []string{"lb2", "10.0.0.3:8000", "::1"} }, true},
		{"lease > heartbeat", func(c *Config) { c.LeaseTimeout = 200 * time.Millisecond }, false},
		{"heartbeat > election", func(c *Config) { c.HeartbeatTimeout = 300 * time.Millisecond }, false},
		{"below minimum", func(c *Config) { c.LeaseTimeout = 10 * time.Millisecond }, false},
		{"all equal", func(c *Config) {
			c.LeaseTimeout, c.HeartbeatTimeout, c.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			_, err := New(cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// TestTimingErrorsNameFlags checks that timing errors name the flag and value an operator must change.
func TestTimingErrorsNameFlags(t *testing.T) {
	for _, tt := range []struct {
		hb, el, lease time.Duration
		want          string
	}{
		{100 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, "-raft-lease 150ms"},
		{200 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond, "-raft-heartbeat 200ms"},
		{100 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, "-raft-election 10ms"},
	} {
		err := validateTimings(tt.hb, tt.el, tt.lease)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("validateTimings(%v,%v,%v) = %v, want mention of %q", tt.hb, tt.el, tt.lease, err, tt.want)
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
