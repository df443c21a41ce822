package viptest

import "sync"

// EventLog records the order in which fakes were called, shared between fakes so that tests can
// assert orderings such as "the VIP was removed before leadership was transferred".
type EventLog struct {
	mu     sync.Mutex
	events []string
}

// Add appends one event. A nil *EventLog ignores it.
func (l *EventLog) Add(event string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.events = append(l.events, event)
	l.mu.Unlock()
}

// Events returns a copy of the events so far.
func (l *EventLog) Events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// Index returns the position of the first event equal to e at or after from, or -1.
func (l *EventLog) Index(e string, from int) int {
	ev := l.Events()
	for i := from; i < len(ev); i++ {
		if ev[i] == e {
			return i
		}
	}
	return -1
}
