package notify_test

import (
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/vipd/vipd/internal/notify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pending returns the value waiting in ch, if any, without blocking.
func pending[T any](ch <-chan T) (T, bool) {
	select {
	case v := <-ch:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

func TestSignal(t *testing.T) {
	var s notify.Signal
	a, stopA := s.Subscribe()
	b, stopB := s.Subscribe()
	defer stopB()
	steps := []struct {
		name         string
		do           func()
		wantA, wantB bool
	}{
		{"nothing before the first Notify", func() {}, false, false},
		{"one Notify wakes every subscriber", s.Notify, true, true},
		{"read: nothing left", func() {}, false, false},
		{"three Notify coalesce into one wake-up", func() { s.Notify(); s.Notify(); s.Notify() }, true, true},
		{"stopped subscriber receives nothing more", func() { stopA(); stopA(); s.Notify() }, false, true},
	}
	for _, st := range steps {
		st.do()
		_, gotA := pending(a)
		_, gotB := pending(b)
		if gotA != st.wantA || gotB != st.wantB {
			t.Fatalf("%s: woken a=%v b=%v, want a=%v b=%v", st.name, gotA, gotB, st.wantA, st.wantB)
		}
	}
}

func TestLatestStartsWithTheCurrentValueAndReplacesUnread(t *testing.T) {
	b := notify.NewLatest("initial")
	early, stopEarly := b.Subscribe()
	defer stopEarly()
	if v, ok := pending(early); !ok || v != "initial" {
		t.Fatalf("first value %q (%v), want the initial value", v, ok)
	}
	b.Publish("one")
	b.Publish("two") // replaces the unread "one"
	if v, ok := pending(early); !ok || v != "two" {
		t.Fatalf("got %q (%v), want only the newest value two", v, ok)
	}
	if _, ok := pending(early); ok {
		t.Fatal("a second value after the newest one was read")
	}
	late, stopLate := b.Subscribe()
	defer stopLate()
	if v, ok := pending(late); !ok || v != "two" {
		t.Fatalf("late subscriber starts with %q (%v), want the current value two", v, ok)
	}
}

func TestZeroBroadcasterDeliversOnlyLaterValues(t *testing.T) {
	var b notify.Broadcaster[int]
	b.Publish(1) // no subscriber: must not block or panic
	ch, stop := b.Subscribe()
	defer stop()
	if v, ok := pending(ch); ok {
		t.Fatalf("zero Broadcaster delivered %d published before the subscription", v)
	}
	b.Publish(2)
	if v, ok := pending(ch); !ok || v != 2 {
		t.Fatalf("got %d (%v), want 2", v, ok)
	}
}

// TestPublishNeverBlocksAndTheLastValueArrives runs publishers against a reader and a subscriber that never
// reads: Publish must not block on either, and once publishing stops the reader must end on the last value.
func TestPublishNeverBlocksAndTheLastValueArrives(t *testing.T) {
	b := notify.NewLatest(0)
	stuck, stopStuck := b.Subscribe() // never read
	defer stopStuck()
	reader, stopReader := b.Subscribe()
	defer stopReader()

	const n = 10000
	done := make(chan struct{})
	var last int
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case v := <-reader:
				if v < last {
					t.Errorf("value %d after %d: a stale value overtook a newer one", v, last)
				}
				last = v
			case <-done:
				if v, ok := pending(reader); ok {
					last = v
				}
				return
			}
		}
	})
	// Concurrent subscribe/unsubscribe churn while publishing, for the race detector.
	wg.Go(func() {
		for range 1000 {
			_, stop := b.Subscribe()
			stop()
		}
	})
	for i := 1; i <= n; i++ {
		b.Publish(i)
	}
	close(done)
	wg.Wait()
	if last != n {
		t.Fatalf("reader ended on %d, want the last value %d", last, n)
	}
	if v, ok := pending(stuck); !ok || v != n {
		t.Fatalf("unread subscriber holds %d (%v), want the last value %d", v, ok, n)
	}
}
