package vip

import (
	"net"
	"sync"
	"time"
)

// Reply rate limits of the ARP/NDP responder, so that it cannot be used to amplify or reflect traffic, nor
// made to spend unbounded CPU sending.
const (
	// replyPerRequester bounds the replies to one requester (ARP: its MAC, where the reply goes; NDP: its
	// IPv6 source, where the advertisement goes) per window. A host resolves a neighbour once per
	// reachable time (Linux: 15–45 s) and, while resolving, asks at most once a second; monitoring that
	// watches who answers for the VIP (arping -i 0.01, the compose suite's observer) asks up to 100 times a
	// second and must not see gaps, or it reports an outage that is not there. A reply is no larger than
	// its request, so this is no amplifier: an attacker spoofing a victim's MAC makes us send the victim at
	// most 100 frames (6 kB) a second.
	replyPerRequester = 100
	// replyGlobal bounds the replies to all requesters together per window: a LAN of 1,000 hosts that all
	// talk to the VIP needs under 100 replies/s; 10,000/s caps what a flood of requests from spoofed MACs
	// makes us send at 600 kB/s while leaving a hundred times a real LAN's need for real requesters.
	replyGlobal = 10000
	// replyWindow is the window of both counts.
	replyWindow = time.Second
)

// replyLimiter counts replies per requester key and in total in fixed windows. It is used by one reader
// goroutine, so it has no lock. Its map never holds more than global keys (a key is only added for a reply
// the global count allowed) and is emptied every window, so memory stays bounded whatever the sender
// addresses an attacker cycles through.
type replyLimiter[K comparable] struct {
	perKey, global int
	window         time.Duration
	start          time.Time
	total          int
	counts         map[K]int
}

func newReplyLimiter[K comparable](perKey, global int, window time.Duration) *replyLimiter[K] {
	return &replyLimiter[K]{perKey: perKey, global: global, window: window, counts: make(map[K]int)}
}

// allow reports whether a reply to k may be sent at now, and counts it if so.
func (l *replyLimiter[K]) allow(k K, now time.Time) bool {
	if now.Sub(l.start) >= l.window || now.Before(l.start) {
		l.start, l.total = now, 0
		clear(l.counts)
	}
	if l.total >= l.global || l.counts[k] >= l.perKey {
		return false
	}
	l.counts[k]++
	l.total++
	return true
}

// Warning rate limits: a conflicting announcer or a failing socket is worth one line a minute, not one
// per frame (an unthrottled warning per gratuitous ARP turned 20,000 frames into 2,780 log lines).
const (
	warnEvery = time.Minute
	// maxWarnKeys bounds the (reason, MAC) pairs remembered; beyond it (an attacker cycling MACs) the extra
	// MACs share one key per reason, so the log still gets at most one line per minute for them. 64 real
	// hosts announcing our VIP within a minute is already far beyond any misconfiguration.
	maxWarnKeys = 64
)

// warnKey is what one warning line stands for: a reason and the MAC it is about (zero when none).
type warnKey struct {
	reason string
	mac    [6]byte
}

type warnState struct {
	last       time.Time
	suppressed int
}

// warnLimiter decides which warnings are logged. Safe for concurrent use (the ARP and NDP readers and
// the socket supervisor share one).
type warnLimiter struct {
	mu     sync.Mutex
	every  time.Duration
	max    int
	seen   map[warnKey]*warnState
	pruned time.Time
}

func newWarnLimiter(every time.Duration, maxKeys int) *warnLimiter {
	return &warnLimiter{every: every, max: maxKeys, seen: make(map[warnKey]*warnState)}
}

// allow reports whether a warning for k may be logged at now and, if so, how many warnings for it were
// suppressed since the last one logged (for the line's "suppressed" attribute).
func (l *warnLimiter) allow(k warnKey, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[k]
	if s == nil {
		if len(l.seen) >= l.max && now.Sub(l.pruned) >= time.Second {
			// Forget keys quiet for a whole interval (their suppressed counts are in the metrics anyway);
			// at most once a second, so a MAC-cycling flood does not pay a scan per frame.
			l.pruned = now
			for key, st := range l.seen {
				if now.Sub(st.last) >= l.every {
					delete(l.seen, key)
				}
			}
		}
		if len(l.seen) >= l.max {
			k.mac = overflowMAC
		}
		if s = l.seen[k]; s == nil {
			s = &warnState{last: now.Add(-l.every)}
			l.seen[k] = s
		}
	}
	if now.Sub(s.last) < l.every && !now.Before(s.last) {
		s.suppressed++
		return false, 0
	}
	suppressed, s.last, s.suppressed = s.suppressed, now, 0
	return true, suppressed
}

// overflowMAC is the shared key of MACs beyond maxWarnKeys (broadcast: never a real sender).
var overflowMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// macString formats a MAC as text ("aa:bb:cc:dd:ee:ff"), never as raw bytes (a JSON log handler would
// print a net.HardwareAddr as base64).
func macString(m [6]byte) string { return net.HardwareAddr(m[:]).String() }
