package attack

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/agent"
	"github.com/vipd/vipd/internal/nstest"
	"github.com/vipd/vipd/internal/sched"
)

// The stall probe tells the machine's noise from the attack's effect. vipd's default Raft lease is 50 ms: a
// leader that cannot run for longer steps down, and the VIP moves. On a shared two-core test machine, any
// process — at the agent's nice -10 too, and in a session of its own — is sometimes not scheduled for 50 to
// 350 ms (measured while other test suites ran: 30 such stalls in 40 s under `make unit`-like load, none
// accounted as hypervisor steal). Such a stall moves leadership whatever the attacker does. So a process
// that does nothing but sleep 1 ms at a time, one thread pinned to each CPU, at the agent's priority,
// reports every time it overslept: a leader's lease step-down that follows such a stall is the machine's,
// not the attack's (see attempt.attributed).

const roleStallProbe = "stallprobe"

// stallSpec: the probe's priority, the shortest oversleep it reports, and the most it runs.
type stallSpec struct {
	Nice     int
	Min      time.Duration
	Duration time.Duration
}

// stall is one oversleep of the probe on one CPU.
type stall struct {
	CPU    int
	Start  time.Time
	Length time.Duration
}

func (s stall) end() time.Time { return s.Start.Add(s.Length) }

func (s stall) String() string {
	return fmt.Sprintf("%s +%v (cpu %d)", s.Start.Format("15:04:05.000"), s.Length.Round(time.Millisecond), s.CPU)
}

func stallProbe(raw []byte) error {
	var spec stallSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	ctx, stop := untilSignal(spec.Duration)
	defer stop()
	if err := sched.SetNice(spec.Nice); err != nil {
		return err
	}
	var mu sync.Mutex // one line at a time on stdout
	var wg sync.WaitGroup
	for cpu := range runtime.NumCPU() {
		wg.Go(func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine (this process forks nothing)
			var set unix.CPUSet
			set.Set(cpu)
			_ = unix.SchedSetaffinity(0, &set)
			_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), spec.Nice)
			for ctx.Err() == nil {
				t0 := time.Now()
				time.Sleep(time.Millisecond) // the probe: how late does a 1 ms sleep end?
				if over := time.Since(t0) - time.Millisecond; over >= spec.Min {
					b, _ := json.Marshal(stall{CPU: cpu, Start: t0, Length: over})
					mu.Lock()
					fmt.Printf("ATTACK-EVENT %s\n", b)
					mu.Unlock()
				}
			}
		})
	}
	fmt.Println("ATTACK-READY")
	wg.Wait()
	return report(struct{}{})
}

// stallWatch is the parent's side of the probe: every stall reported so far.
type stallWatch struct {
	mu     sync.Mutex
	stalls []stall
	proc   *attackerProc
}

// startStallProbe runs the probe in ns at the agents' default priority; stop ends it.
func startStallProbe(t *testing.T, ns *nstest.NS) *stallWatch {
	t.Helper()
	w := &stallWatch{}
	w.proc = startAttacker(t, ns, roleStallProbe, stallSpec{Nice: agent.Default().Nice, Min: 20 * time.Millisecond, Duration: 5 * time.Minute},
		func(b []byte) {
			var s stall
			if json.Unmarshal(b, &s) == nil {
				w.mu.Lock()
				w.stalls = append(w.stalls, s)
				w.mu.Unlock()
			}
		})
	w.proc.waitReady(t, 30*time.Second)
	return w
}

func (w *stallWatch) stop(t *testing.T) {
	var done struct{}
	w.proc.finish(t, true, 30*time.Second, &done)
}

// between returns the stalls that overlap [from, to].
func (w *stallWatch) between(from, to time.Time) []stall {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []stall
	for _, s := range w.stalls {
		if s.Start.Before(to) && s.end().After(from) {
			out = append(out, s)
		}
	}
	return out
}

// all returns every stall, longest first.
func (w *stallWatch) all() []stall {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := slices.Clone(w.stalls)
	slices.SortFunc(out, func(a, b stall) int { return int(b.Length - a.Length) })
	return out
}
