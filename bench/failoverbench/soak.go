package main

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"time"
)

// soakResult is what a steady-state run under CPU saturation saw: every leader change (a new term or a new
// leader name on any node) and every change of which node had the VIP on lo.
type soakResult struct {
	duration      time.Duration
	samples       int
	leaderChanges int
	holderChanges int
	events        []string
}

// soak keeps the cluster in steady state for d while burners (one per core, each a time-bounded busy loop
// in its own process) saturate the CPU, and counts leadership and VIP changes.
func soak(ctx context.Context, c *cluster, lo *loWatch, self string, d time.Duration) (soakResult, error) {
	res := soakResult{duration: d}
	var burners []*exec.Cmd
	for range runtime.NumCPU() {
		cmd := exec.CommandContext(ctx, self, "burn", "-for", d.String())
		if err := cmd.Start(); err != nil {
			return res, fmt.Errorf("start CPU burner: %w", err)
		}
		burners = append(burners, cmd)
	}
	defer func() {
		for _, b := range burners {
			_ = b.Process.Kill()
			_ = b.Wait()
		}
	}()

	lastTerm := map[string]uint64{}
	lastLeader := map[string]string{}
	lastHolders := fmt.Sprint(lo.holders())
	end := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
		res.samples++
		for _, n := range c.nodes {
			st, err := getStatus(c.t.ns(n.name))
			if err != nil {
				continue // a slow answer under load is not a leader change
			}
			if t, ok := lastTerm[n.name]; ok && (st.Term != t || st.Leader != lastLeader[n.name]) {
				res.leaderChanges++
				res.events = append(res.events, fmt.Sprintf("%s %s: term %d→%d, leader %q→%q",
					time.Now().Format("15:04:05.000"), n.name, t, st.Term, lastLeader[n.name], st.Leader))
			}
			lastTerm[n.name], lastLeader[n.name] = st.Term, st.Leader
		}
		if h := fmt.Sprint(lo.holders()); h != lastHolders {
			res.holderChanges++
			res.events = append(res.events, fmt.Sprintf("%s VIP on lo: %s→%s", time.Now().Format("15:04:05.000"), lastHolders, h))
			lastHolders = h
		}
	}
	return res, nil
}

// burnMain spins one core until -for has passed: the "another process saturating the CPU" of the stability
// target. It always stops by itself.
func burnMain(args []string) error {
	if len(args) != 2 || args[0] != "-for" {
		return fmt.Errorf("usage: burn -for DURATION")
	}
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	end := time.Now().Add(d)
	x := uint64(1)
	for time.Now().Before(end) {
		for i := range 1 << 16 {
			x = x*6364136223846793005 + uint64(i)
		}
	}
	_ = strconv.FormatUint(x, 10)
	return nil
}
