package attack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/rogue"
)

// Observers run for the whole attack, each in one goroutine the test stops: a client resolving the VIP,
// a watch of which node has the VIP on lo, and a watch of every node's view of the cluster. Each labels
// what it records with the phase of the attack it happened in.

// phases labels the attack in progress, for the observers.
type phases struct {
	mu  sync.Mutex
	cur string
}

func (p *phases) set(name string) { p.mu.Lock(); p.cur = name; p.mu.Unlock() }
func (p *phases) get() string     { p.mu.Lock(); defer p.mu.Unlock(); return p.cur }

// watcher runs one observer loop until stop.
type watcher struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func watch(t *testing.T, loop func(ctx context.Context)) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		loop(ctx)
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watcher) stop() { w.cancel(); <-w.done }

// sleepCtx waits d or until ctx is done; it paces a loop.
func sleepCtx(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// arpAnswer is one ARP request of the client and its reply.
type arpAnswer struct {
	phase    string
	answered bool
	mac      string // the replying MAC (ARP sender hardware address)
	rtt      time.Duration
}

// arpClient resolves the VIP from the client namespace, one request at a time every 5 to 10 ms, as a host
// whose neighbour entry keeps expiring would: each waits up to a second (Linux's retransmit time) for its
// reply. Requests come from 40 made-up requesters in turn, each well under the responder's per-requester
// reply limit. It reads only ARP replies from the VIP (a filter on its own socket), so a flood costs it
// nothing.
type arpClient struct {
	w       *watcher
	mu      sync.Mutex
	answers []arpAnswer
}

const arpRequesters = 40

func startARPClient(t *testing.T, r *rig, ph *phases) *arpClient {
	t.Helper()
	vip := netip.MustParseAddr(vipAddr).As4()
	filter, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_ARP, SkipFalse: 5},
		bpf.LoadAbsolute{Off: 20, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipFalse: 3}, // a reply
		bpf.LoadAbsolute{Off: 28, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(vip[:]), SkipFalse: 1}, // from the VIP
		bpf.RetConstant{Val: 128},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	var c *packet.Conn
	if err := r.client.Do(func() error {
		var err error
		c, err = packet.Listen(r.clientIf, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: filter})
		return err
	}); err != nil {
		t.Fatalf("client ARP socket: %v", err)
	}
	// Replies go to the requesters' made-up MACs, which only a promiscuous interface takes in.
	if err := c.SetPromiscuous(true); err != nil {
		c.Close()
		t.Fatal(err)
	}
	a := &arpClient{}
	a.w = watch(t, func(ctx context.Context) {
		defer c.Close()
		bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		buf := make([]byte, 128)
		for i := 0; ctx.Err() == nil; i++ {
			mac := [6]byte{0x02, 0x77, 0, 0, 0, byte(i % arpRequesters)}
			from := netip.AddrFrom4([4]byte{10, 214, 0, byte(150 + i%arpRequesters)})
			req := rogue.ARPFrame(bcast, mac, 1, mac, from, [6]byte{}, netip.AddrFrom4(vip))
			ans := arpAnswer{phase: ph.get()}
			sent := time.Now()
			if _, err := c.WriteTo(req, &packet.Addr{HardwareAddr: bcast[:]}); err != nil {
				t.Errorf("client: send ARP request: %v", err)
				return
			}
			for deadline := sent.Add(time.Second); ; {
				_ = c.SetReadDeadline(deadline)
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Errorf("client: read ARP reply: %v", err)
						return
					}
					break // unanswered
				}
				if n >= 42 && [6]byte(buf[32:38]) == mac && netip.AddrFrom4([4]byte(buf[38:42])) == from {
					ans.answered, ans.mac, ans.rtt = true, net.HardwareAddr(buf[22:28]).String(), time.Since(sent)
					break
				}
			}
			if ctx.Err() != nil && !ans.answered {
				break // stopped while waiting: not a request the responder could answer
			}
			a.mu.Lock()
			a.answers = append(a.answers, ans)
			a.mu.Unlock()
			sleepCtx(ctx, time.Duration(5+i%6)*time.Millisecond)
		}
	})
	return a
}

// arpStats is what the client's requests got.
type arpStats struct {
	sent, answered int
	macs           map[string]int
	maxRTT         time.Duration
}

func (s arpStats) share() float64 {
	if s.sent == 0 {
		return 0
	}
	return float64(s.answered) / float64(s.sent)
}

func (s arpStats) String() string {
	return fmt.Sprintf("%d/%d answered (%.1f %%), slowest %v, from %v", s.answered, s.sent, 100*s.share(),
		s.maxRTT.Round(time.Microsecond), s.macs)
}

// stats sums the requests made during the phases match accepts.
func (a *arpClient) stats(match func(phase string) bool) arpStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := arpStats{macs: map[string]int{}}
	for _, x := range a.answers {
		if !match(x.phase) {
			continue
		}
		s.sent++
		if x.answered {
			s.answered++
			s.macs[x.mac]++
			s.maxRTT = max(s.maxRTT, x.rtt)
		}
	}
	return s
}

// event is one change an observer saw.
type event struct {
	at    time.Time
	phase string
	what  string
}

func (e event) String() string {
	return fmt.Sprintf("%s [%s] %s", e.at.Format("15:04:05.000"), e.phase, e.what)
}

// changeLog keeps the events of one observer.
type changeLog struct {
	mu     sync.Mutex
	events []event
}

func (l *changeLog) add(phase, what string) {
	l.mu.Lock()
	l.events = append(l.events, event{time.Now(), phase, what})
	l.mu.Unlock()
}

func (l *changeLog) list() []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// watchHolders samples every node's lo every 10 ms through netlink and logs every change of the set of nodes
// holding the VIP (from the baseline given).
func watchHolders(t *testing.T, r *rig, ph *phases, baseline []string) (*watcher, *changeLog) {
	log := &changeLog{}
	last := strings.Join(baseline, ",")
	w := watch(t, func(ctx context.Context) {
		for ctx.Err() == nil {
			var holders []string
			ok := true
			for _, n := range r.nodes {
				held, err := n.holdsVIP()
				if err != nil {
					ok = false
					break
				}
				if held {
					holders = append(holders, n.name)
				}
			}
			if h := strings.Join(holders, ","); ok && h != last {
				log.add(ph.get(), fmt.Sprintf("VIP on lo of [%s], was [%s]", h, last))
				last = h
			}
			sleepCtx(ctx, 10*time.Millisecond)
		}
	})
	return w, log
}

// watchViews polls every node's admin API every 100 ms and logs every change of its term, leader, voter
// count or member list (from the baseline given). A node that does not answer once is not a change.
func watchViews(t *testing.T, r *rig, ph *phases, baseline view) (*watcher, *changeLog) {
	log := &changeLog{}
	w := watch(t, func(ctx context.Context) {
		last := map[string]string{}
		for _, n := range r.nodes {
			last[n.name] = fmt.Sprintf("term %d, leader %s, voters %d, members %s", baseline.terms[n.name], baseline.leader,
				baseline.voters[n.name], baseline.members[n.name])
		}
		for ctx.Err() == nil {
			for _, n := range r.nodes {
				st, err := n.status()
				if err != nil {
					continue
				}
				ms, err := n.members()
				if err != nil {
					continue
				}
				var rows []string
				for _, m := range ms.Members {
					rows = append(rows, m.Name+"/"+m.Status+"/"+m.Role)
				}
				slices.Sort(rows)
				now := fmt.Sprintf("term %d, leader %s, voters %d, members %s", st.Term, st.Leader, st.Voters, strings.Join(rows, ","))
				if now != last[n.name] {
					log.add(ph.get(), fmt.Sprintf("%s: %s (was %s)", n.name, now, last[n.name]))
					last[n.name] = now
				}
			}
			sleepCtx(ctx, 100*time.Millisecond)
		}
	})
	return w, log
}
