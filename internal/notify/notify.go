// Package notify is vipd's one implementation of "subscribe to changes": a broadcaster that hands the latest
// value to any number of subscribers without ever blocking the publisher.
//
// Every subscriber gets its own channel of capacity 1 that always holds the newest value it has not read yet:
// Publish replaces an unread value instead of queueing behind it. A slow subscriber therefore skips stale
// values but never misses the last one, and a stuck subscriber cannot stall the publisher (a Raft notify
// loop, a health checker, the VIP manager's leadership loop). Two uses:
//
//   - Signal: "something changed, re-read the state" (health, the VIP manager's Held). The value carries
//     nothing; several changes before the subscriber reads coalesce into one wake-up.
//   - NewLatest: the state itself (a leadership value). A new subscriber starts with the current value, so
//     it never has to read the state separately and race a change.
//
// Channels are never closed: a subscriber stops by calling the function Subscribe returned, after which it
// receives nothing more.
package notify

import "sync"

// Broadcaster delivers the latest published value to every subscriber. The zero value is ready to use and
// gives new subscribers only values published after they subscribed; NewLatest makes one that gives them the
// current value first. Safe for concurrent use.
type Broadcaster[T any] struct {
	mu     sync.Mutex
	subs   map[uint64]chan T
	next   uint64
	cur    T
	sticky bool // a new subscriber starts with cur
}

// NewLatest returns a Broadcaster whose subscribers first receive the latest value (initial until the first
// Publish), then every later one.
func NewLatest[T any](initial T) *Broadcaster[T] {
	return &Broadcaster[T]{cur: initial, sticky: true}
}

// Subscribe returns a capacity-1 channel that holds the newest value not read yet, and a function that ends
// the subscription (idempotent; the channel is not closed).
func (b *Broadcaster[T]) Subscribe() (<-chan T, func()) {
	ch := make(chan T, 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = make(map[uint64]chan T)
	}
	id := b.next
	b.next++
	if b.sticky {
		ch <- b.cur
	}
	b.subs[id] = ch
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, id)
	}
}

// Publish makes v the latest value and hands it to every subscriber, replacing a value it has not read yet.
// It never blocks on a subscriber.
func (b *Broadcaster[T]) Publish(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur = v
	for _, ch := range b.subs {
		select { // drop the unread value, if any
		case <-ch:
		default:
		}
		ch <- v // cannot block: capacity 1, emptied above, and only Publish sends, under mu
	}
}

// Signal is a Broadcaster of "something changed": subscribers re-read the state they follow. The zero value
// is ready to use. Safe for concurrent use.
type Signal struct{ b Broadcaster[struct{}] }

// Subscribe returns a capacity-1 channel that receives a value after Notify (several Notify calls before the
// subscriber reads coalesce into one), and a function that ends the subscription (idempotent; the channel is
// not closed).
func (s *Signal) Subscribe() (<-chan struct{}, func()) { return s.b.Subscribe() }

// Notify wakes every subscriber without blocking.
func (s *Signal) Notify() { s.b.Publish(struct{}{}) }
