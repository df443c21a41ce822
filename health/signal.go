package health

import "sync"

// signal is a "something changed" broadcaster: each subscriber has a capacity-1 channel, Notify never blocks,
// and several notifications before a subscriber reads coalesce into one wake-up. The zero value is ready to
// use; it is safe for concurrent use.
//
// It has the shape of internal/notify.Signal (issue 9.7), which was not in main when this was written; once it
// is, this type is meant to be replaced by it.
type signal struct {
	mu   sync.Mutex
	subs map[uint64]chan struct{}
	next uint64
}

// Subscribe returns a capacity-1 channel that receives a value after Notify, and a function that ends the
// subscription (idempotent). The channel is never closed.
func (s *signal) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = make(map[uint64]chan struct{})
	}
	id := s.next
	s.next++
	s.subs[id] = ch
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// Notify wakes every subscriber without blocking: a subscriber with a signal pending keeps just that one.
func (s *signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
