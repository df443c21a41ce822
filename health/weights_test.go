package health

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWeightedSequence(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string // backends as letters a, b, c, …
	}{
		{"one backend", []int{1}, "a"},
		{"equal weights keep the order", []int{1, 1, 1}, "abc"},
		{"equal weights above 1 reduce", []int{5, 5}, "ab"},
		{"3:1 is spread, not bunched", []int{3, 1}, "aaba"},
		{"1:3: ties go to the earlier backend", []int{1, 3}, "babb"},
		{"nginx's example 5:1:1", []int{5, 1, 1}, "aabacaa"},
		{"4:2 reduces to 2:1", []int{4, 2}, "aba"},
		{"2:3", []int{2, 3}, "babab"},
		{"3:2:1", []int{3, 2, 1}, "abacba"},
		{"max weight next to 1", []int{MaxWeight, 1}, strings.Repeat("a", 128) + "b" + strings.Repeat("a", 128)},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got strings.Builder
			for _, i := range weightedSequence(tt.weights) {
				got.WriteByte(byte('a' + i))
			}
			if got.String() != tt.want {
				t.Fatalf("sequence for %v = %q, want %q", tt.weights, got.String(), tt.want)
			}
		})
	}
}

// TestMonitorWeightedHealthy checks that Healthy is the weighted sequence of the serving backends, follows
// state changes and drains, and stays allocation-free.
func TestMonitorWeightedHealthy(t *testing.T) {
	h := startMonitorWeighted(t, Config{Rise: 1, Fall: 1}, Backend{"a:1", 3}, Backend{"b:1", 0}, Backend{"c:1", 2})
	h.first()
	h.wantHealthy("a:1", "c:1", "a:1", "b:1", "c:1", "a:1") // 3:1:2
	if allocs := testing.AllocsPerRun(1000, func() { _ = h.m.Healthy() }); allocs != 0 {
		t.Fatalf("Healthy allocates %v times per call", allocs)
	}
	for _, b := range h.m.Backends() {
		if want := map[string]int{"a:1": 3, "b:1": 1, "c:1": 2}[b.Addr]; b.Weight != want {
			t.Fatalf("%s: weight %d, want %d (0 means %d)", b.Addr, b.Weight, want, DefaultWeight)
		}
	}
	h.m.ReportDialFailure("c:1", errDown)
	h.wantHealthy("a:1", "a:1", "b:1", "a:1") // 3:1
	if err := h.m.SetDrain("a:1", true); err != nil {
		t.Fatal(err)
	}
	h.wantHealthy("b:1")
}

func TestMonitorWeightValidation(t *testing.T) {
	ok := Config{Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1, Checker: NewTCPChecker()}
	tests := []struct {
		name     string
		backends []Backend
		want     string
	}{
		{"negative", []Backend{{"a:1", 1}, {"b:1", -1}}, "Backends[1].Weight: weight -1 of b:1 is out of range 1-256 (0 or unset means 1)"},
		{"too large", []Backend{{"a:1", 257}}, "Backends[0].Weight: weight 257 of a:1 is out of range 1-256 (0 or unset means 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMonitor(ok, tt.backends)
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewMonitor error %v, want %q", err, tt.want)
			}
		})
	}
	for _, w := range []int{0, 1, MaxWeight} {
		if _, err := NewMonitor(ok, []Backend{{"a:1", w}}); err != nil {
			t.Fatalf("weight %d: %v", w, err)
		}
	}
	if got := BackendList("a:1", "b:1"); !slices.Equal(got, []Backend{{"a:1", 0}, {"b:1", 0}}) {
		t.Fatalf("BackendList = %v", got)
	}
}
