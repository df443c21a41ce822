package arpwatch

import (
	"testing"
	"time"
)

func TestAnalyze(t *testing.T) {
	t0 := time.Unix(2000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	reply := func(ms int, mac string) Answer { return Answer{At: at(ms), MAC: mac} }
	garp := func(ms int, mac string) Answer { return Answer{At: at(ms), MAC: mac, Gratuitous: true} }
	reqs := func(from, to int) []time.Time {
		var out []time.Time
		for ms := from; ms < to; ms += 20 {
			out = append(out, at(ms))
		}
		return out
	}
	const A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
	tests := []struct {
		name        string
		answers     []Answer
		wantWindows int
		wantOverlap time.Duration
		wantSilent  time.Duration
	}{
		{
			name:       "one holder throughout",
			answers:    []Answer{reply(1, A), reply(21, A), reply(41, A), reply(61, A), reply(81, A)},
			wantSilent: 20 * time.Millisecond,
		},
		{
			name: "clean handover in one window is no overlap",
			// A answers request 40 at 41, releases; B announces at 45 and answers from 61.
			answers:    []Answer{reply(1, A), reply(21, A), reply(41, A), garp(45, B), reply(61, B), reply(81, B)},
			wantSilent: 20 * time.Millisecond,
		},
		{
			name: "split brain: both answer every request for 60ms",
			answers: []Answer{reply(1, A), reply(21, A), reply(22, B), reply(41, A), reply(42, B),
				reply(61, A), reply(62, B), reply(81, B)},
			wantWindows: 3, wantOverlap: 39 * time.Millisecond, wantSilent: 20 * time.Millisecond,
		},
		{
			name:       "outage then new holder",
			answers:    []Answer{reply(1, A), reply(21, B), reply(41, B)},
			wantSilent: 59 * time.Millisecond,
		},
		{
			name: "stale answer long after the run does not join it",
			// A answered up to 21, went silent (crash), B holds; A reappears at 81 (restart bug).
			answers:     []Answer{reply(1, A), reply(21, A), reply(41, B), reply(61, B), reply(81, A), reply(82, B)},
			wantWindows: 1, wantOverlap: 0, wantSilent: 20 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Analyze(tt.answers, reqs(0, 100), at(0), at(100), 30*time.Millisecond)
			if r.TwoMACWindows != tt.wantWindows || r.Overlap != tt.wantOverlap || r.Silent != tt.wantSilent {
				t.Errorf("Analyze = windows %d overlap %s silent %s, want %d %s %s",
					r.TwoMACWindows, r.Overlap, r.Silent, tt.wantWindows, tt.wantOverlap, tt.wantSilent)
			}
			if r.Requests != 5 {
				t.Errorf("Requests = %d, want 5", r.Requests)
			}
		})
	}
}

func TestAnalyzeWindowBounds(t *testing.T) {
	t0 := time.Unix(2000, 0)
	answers := []Answer{{At: t0.Add(-time.Second), MAC: "x"}, {At: t0.Add(time.Millisecond), MAC: "y"}, {At: t0.Add(time.Hour), MAC: "z"}}
	r := Analyze(answers, nil, t0, t0.Add(time.Second), time.Second)
	if len(r.Answers) != 1 || r.Answers["y"] != 1 {
		t.Errorf("Answers = %v, want only y once", r.Answers)
	}
}
