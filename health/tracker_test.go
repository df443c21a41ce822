package health

import "testing"

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{
		StateUnknown: "unknown", StateHealthy: "healthy", StateUnhealthy: "unhealthy", State(9): "State(9)",
	} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

func TestTracker(t *testing.T) {
	const (
		U = StateUnknown
		H = StateHealthy
		D = StateUnhealthy
	)
	tests := []struct {
		name       string
		rise, fall int
		results    string  // '+' success, '-' failure
		want       []State // state after each result
	}{
		{"unknown: first success is healthy", 2, 3, "+", []State{H}},
		{"unknown: fall failures are unhealthy", 2, 3, "---", []State{U, U, D}},
		{"unknown: failures then success is healthy", 2, 3, "--+", []State{U, U, H}},
		{"unknown: success resets failure count", 2, 3, "--+---", []State{U, U, H, H, H, D}},
		{"healthy: fall consecutive failures", 2, 3, "+---", []State{H, H, H, D}},
		{"healthy: interrupted failures do not fall", 2, 3, "+--+--+--", []State{H, H, H, H, H, H, H, H, H}},
		{"unhealthy: rise consecutive successes", 2, 3, "---++", []State{U, U, D, D, H}},
		{"unhealthy: interrupted successes do not rise", 2, 3, "---+-+-+", []State{U, U, D, D, D, D, D, D}},
		{"unhealthy: counts start at the transition", 3, 2, "--+-+++", []State{U, D, D, D, D, D, H}},
		{"rise 1 fall 1 follows every result", 1, 1, "+-+-", []State{H, D, H, D}},
		{"rise and fall below 1 act as 1", 0, -1, "-+", []State{D, H}},
		{"long run stays healthy", 2, 3, "++++++", []State{H, H, H, H, H, H}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(tt.rise, tt.fall)
			if tr.State() != U {
				t.Fatalf("new tracker state = %v, want unknown", tr.State())
			}
			prev := U
			for i, r := range tt.results {
				got, changed := tr.Observe(r == '+')
				if got != tt.want[i] {
					t.Fatalf("after %q: state %v, want %v", tt.results[:i+1], got, tt.want[i])
				}
				if changed != (got != prev) {
					t.Fatalf("after %q: changed = %v, state %v -> %v", tt.results[:i+1], changed, prev, got)
				}
				if tr.State() != got {
					t.Fatalf("State() = %v, Observe returned %v", tr.State(), got)
				}
				prev = got
			}
		})
	}
}
