package probe

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"
)

// The fake apiserver's GET /stream?seed=N sends StreamSource(N) in StreamChunk-byte chunks every StreamEvery,
// for at most StreamFor: a long-lived stream whose every byte a client can check, so a segment lost,
// repeated or reordered through the proxy (or a VIP move) shows.
const (
	StreamChunk = 4 << 10
	StreamEvery = 100 * time.Millisecond
	StreamFor   = 10 * time.Minute
)

// StreamSource is the byte sequence of GET /stream?seed=seed.
func StreamSource(seed uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}

// StreamCheck checks bytes received, in order, against StreamSource(seed) and remembers where they first
// differed: a segment lost, repeated or reordered on the way shows as that offset. One goroutine feeds it;
// FirstBad may be read by any.
type StreamCheck struct {
	want    *rand.ChaCha8
	exp     []byte
	checked int64
	bad     atomic.Int64 // offset+1 of the first byte that differed, 0 while none has
}

// NewStreamCheck returns a check of the stream StreamSource(seed) from its first byte.
func NewStreamCheck(seed uint64) *StreamCheck { return &StreamCheck{want: StreamSource(seed)} }

// Check compares p, the next bytes received, with the stream, and reports whether every byte so far matched.
func (s *StreamCheck) Check(p []byte) bool {
	if len(s.exp) < len(p) {
		s.exp = make([]byte, len(p))
	}
	exp := s.exp[:len(p)]
	_, _ = s.want.Read(exp)
	if s.bad.Load() == 0 && !bytes.Equal(p, exp) {
		for j := range p {
			if p[j] != exp[j] {
				s.bad.Store(s.checked + int64(j) + 1)
				break
			}
		}
	}
	s.checked += int64(len(p))
	return s.bad.Load() == 0
}

// FirstBad returns the offset of the first byte that differed from the stream, and false when none has.
func (s *StreamCheck) FirstBad() (int64, bool) {
	b := s.bad.Load()
	return b - 1, b != 0
}

// WriteStream sends StreamSource(seed) on c, 1 KiB every 10 ms (100 KiB/s), each write bounded by timeout,
// until stop or done is closed or a write fails; sent sees every chunk's bytes that c took, in order.
func WriteStream(c net.Conn, seed uint64, timeout time.Duration, stop, done <-chan struct{}, sent func([]byte)) {
	src := StreamSource(seed)
	chunk := make([]byte, 1024)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-done:
			return
		case <-tick.C:
		}
		_, _ = src.Read(chunk)
		_ = c.SetWriteDeadline(time.Now().Add(timeout))
		n, err := c.Write(chunk)
		sent(chunk[:n])
		if err != nil {
			return
		}
	}
}
