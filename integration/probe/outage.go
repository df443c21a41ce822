package probe

import (
	"sort"
	"strings"
	"time"
)

// Outage is what a client saw around a fault.
type Outage struct {
	// Longest is the longest time between the starts of two consecutive
	// successful probes, counting from the last success before the fault.
	// With probes every 10 ms, a fault that nobody notices gives about 10 ms.
	Longest time.Duration
	// Recovered is false when no probe succeeded after the fault; Longest then
	// runs to the end of the window.
	Recovered bool
	// Failed is the number of failed probes in the window, and Errors counts
	// them by the last part of their error ("i/o timeout", "connection
	// refused", "EOF", ...), which tells a dead address from a reset.
	Failed int
	Errors map[string]int
	// Backends counts answers per upstream name after the fault.
	Backends map[string]int
}

// Measure computes the outage seen by the probes between fault and end.
func (p *Prober) Measure(fault, end time.Time) Outage {
	p.mu.Lock()
	all := append([]Sample(nil), p.samples...)
	p.mu.Unlock()
	return Measure(all, fault, end)
}

// Measure computes the outage in samples (any order) between fault and end:
// the longest gap between consecutive successes, starting from the last
// success at or before the fault (or the fault itself if there was none).
func Measure(samples []Sample, fault, end time.Time) Outage {
	samples = append([]Sample(nil), samples...)
	sortByStart(samples)
	o := Outage{Backends: map[string]int{}, Errors: map[string]int{}}
	last := fault
	for _, s := range samples {
		if s.OK && !s.Start.After(fault) {
			last = s.Start
		}
	}
	for _, s := range samples {
		if !s.Start.After(fault) || s.Start.After(end) {
			continue
		}
		if !s.OK {
			o.Failed++
			o.Errors[errorKind(s.Err)]++
			continue
		}
		if gap := s.Start.Sub(last); gap > o.Longest {
			o.Longest = gap
		}
		last = s.Start
		o.Recovered = true
		if s.Backend != "" {
			o.Backends[s.Backend]++
		}
	}
	if gap := end.Sub(last); !o.Recovered && gap > o.Longest {
		o.Longest = gap
	}
	return o
}

// errorKind shortens an error to its cause, without addresses.
func errorKind(err string) string {
	if i := strings.LastIndex(err, ": "); i >= 0 {
		err = err[i+2:]
	}
	if err == "" {
		return "unknown"
	}
	return err
}

func sortByStart(s []Sample) {
	sort.SliceStable(s, func(i, j int) bool { return s[i].Start.Before(s[j].Start) })
}
