package attack

import (
	"testing"
	"time"
)

// TestExplain: a change counts as the machine's only when it follows a leader's step-down that itself
// follows a stall of the probe; anything else is the attack's, and fails the suite. Runs without root.
func TestExplain(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	probe := &stallWatch{stalls: []stall{
		{CPU: 0, Start: at(1000), Length: 70 * time.Millisecond}, // ends at 1070
		{CPU: 1, Start: at(5000), Length: 21 * time.Millisecond}, // too short to explain a step-down
	}}
	for _, tt := range []struct {
		name        string
		downs       []stepDown
		events      []event
		unexplained int
	}{
		{"no change", nil, nil, 0},
		{"step-down after the stall, its consequences", []stepDown{{"n1", at(1075)}},
			[]event{{at: at(1080), what: "VIP released"}, {at: at(1400), what: "new leader"}, {at: at(3900), what: "VIP acquired"}}, 0},
		{"a change without a step-down", nil, []event{{at: at(1080), what: "term moved"}}, 1},
		{"a step-down without a stall", []stepDown{{"n1", at(3000)}}, []event{{at: at(3010), what: "VIP released"}}, 1},
		{"a step-down after a short stall", []stepDown{{"n1", at(5030)}}, []event{{at: at(5040), what: "VIP released"}}, 1},
		{"a change before the step-down", []stepDown{{"n1", at(1075)}}, []event{{at: at(900), what: "term moved"}}, 1},
		{"a change long after the step-down", []stepDown{{"n1", at(1075)}}, []event{{at: at(1075 + 4000), what: "term moved"}}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad, _ := explain(tt.events, tt.downs, probe)
			if len(bad) != tt.unexplained {
				t.Errorf("unexplained %v, want %d", bad, tt.unexplained)
			}
		})
	}
}
