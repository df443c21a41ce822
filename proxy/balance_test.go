package proxy

import (
	"errors"
	"testing"
	"time"
)

type fakeLoads map[string]int64

func (f fakeLoads) active(addr string) int64 { return f[addr] }

func TestBalancerRoundRobin(t *testing.T) {
	b := &balancer{}
	addrs := []string{"a", "b", "c"}
	var got []int
	for range 6 {
		got = append(got, b.pick(RoundRobin, addrs, nil, nil))
	}
	want := []int{0, 1, 2, 0, 1, 2}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("picks %v, want %v", got, want)
		}
	}
}

func TestBalancerRetrySkipsTried(t *testing.T) {
	tests := []struct {
		name  string
		mode  Balance
		loads fakeLoads
		tried []int
		want  int
	}{
		{"rr walks on from last tried", RoundRobin, nil, []int{1}, 2},
		{"rr wraps around", RoundRobin, nil, []int{2}, 0},
		{"rr skips every tried", RoundRobin, nil, []int{2, 0}, 1},
		{"rr all tried", RoundRobin, nil, []int{0, 1, 2}, -1},
		{"lc least untried", LeastConn, fakeLoads{"a": 0, "b": 5, "c": 3}, []int{0}, 2},
		{"lc all tried", LeastConn, fakeLoads{}, []int{1, 0, 2}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &balancer{}
			if got := b.pick(tt.mode, []string{"a", "b", "c"}, tt.tried, tt.loads); got != tt.want {
				t.Fatalf("pick = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBalancerLeastConn(t *testing.T) {
	tests := []struct {
		name  string
		loads fakeLoads
		want  map[int]int // index -> how often picked in 6 picks
	}{
		{"fewest wins", fakeLoads{"a": 3, "b": 1, "c": 2}, map[int]int{1: 6}},
		{"ties go round robin", fakeLoads{"a": 1, "b": 1, "c": 4}, map[int]int{0: 3, 1: 3}},
		{"all equal spread evenly", fakeLoads{}, map[int]int{0: 2, 1: 2, 2: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &balancer{}
			got := map[int]int{}
			for range 6 {
				got[b.pick(LeastConn, []string{"a", "b", "c"}, nil, tt.loads)]++
			}
			if len(got) != len(tt.want) {
				t.Fatalf("picks %v, want %v", got, tt.want)
			}
			for i, n := range tt.want {
				if got[i] != n {
					t.Fatalf("picks %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestBalancerEmpty(t *testing.T) {
	b := &balancer{}
	if got := b.pick(RoundRobin, nil, nil, nil); got != -1 {
		t.Fatalf("pick on no backends = %d, want -1", got)
	}
}

func TestConfigRetries(t *testing.T) {
	tests := []struct{ retries, healthy, want int }{
		{0, 1, 0}, {0, 2, 1}, {0, 3, 2}, {0, 10, 2},
		{-1, 5, 0}, {5, 3, 2}, {1, 3, 1},
	}
	for _, tt := range tests {
		if got := (Config{Retries: tt.retries}).retries(tt.healthy); got != tt.want {
			t.Errorf("Retries %d with %d healthy: %d extra attempts, want %d", tt.retries, tt.healthy, got, tt.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative dial timeout", Config{DialTimeout: -time.Second}},
		{"negative idle timeout", Config{IdleTimeout: -1}},
		{"negative drain timeout", Config{DrainTimeout: -1}},
		{"negative max conns", Config{MaxConns: -1}},
		{"unknown balance", Config{Balance: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, newFakeBackends()); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New error %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(Config{}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with nil Backends: %v, want ErrInvalidConfig", err)
	}
	p, err := New(Config{}, newFakeBackends())
	if err != nil {
		t.Fatal(err)
	}
	if cfg := p.config(); cfg.DialTimeout != DefaultDialTimeout || cfg.KeepAlive != DefaultKeepAlive || cfg.DrainTimeout != DefaultDrainTimeout {
		t.Fatalf("defaults not applied: %+v", cfg.Config)
	}
}

func TestParseBalance(t *testing.T) {
	for _, b := range []Balance{RoundRobin, LeastConn} {
		got, err := ParseBalance(b.String())
		if err != nil || got != b {
			t.Errorf("ParseBalance(%q) = %v, %v", b.String(), got, err)
		}
	}
	if _, err := ParseBalance("random"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseBalance(random) error %v, want ErrInvalidConfig", err)
	}
}
