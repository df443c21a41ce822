package probe

import (
	"net"
	"testing"
	"time"
)

// TestStreamCheck feeds the stream in uneven pieces, intact and with one byte changed, dropped or repeated:
// the check must pass the intact stream and name the first wrong offset of the others.
func TestStreamCheck(t *testing.T) {
	const seed, size = 42, 10000
	src := make([]byte, size)
	_, _ = StreamSource(seed).Read(src)
	changed := append([]byte(nil), src...)
	changed[5000] ^= 1
	dropped := append(append([]byte(nil), src[:3000]...), src[3001:]...)
	repeated := append(append([]byte(nil), src[:7000]...), src[6999:]...)
	for _, tc := range []struct {
		name    string
		got     []byte
		wantBad int64 // -1: none
	}{
		{"intact", src, -1},
		{"a byte changed", changed, 5000},
		{"a byte dropped", dropped, firstDiff(src, dropped)},
		{"a byte repeated", repeated, firstDiff(src, repeated)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewStreamCheck(seed)
			ok := true
			for off, piece := 0, 1; off < len(tc.got); off, piece = off+piece, piece*3%4096+1 {
				ok = c.Check(tc.got[off:min(off+piece, len(tc.got))])
			}
			bad, found := c.FirstBad()
			switch {
			case tc.wantBad < 0 && (!ok || found):
				t.Fatalf("intact stream: ok %v, first bad %d", ok, bad)
			case tc.wantBad >= 0 && (ok || !found || bad != tc.wantBad):
				t.Fatalf("ok %v, first bad %d (%v), want offset %d", ok, bad, found, tc.wantBad)
			}
		})
	}
}

func firstDiff(a, b []byte) int64 {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	return int64(min(len(a), len(b)))
}

// TestWriteStream: what WriteStream sends is the stream StreamCheck expects, sent reports exactly those
// bytes, and it returns once stop is closed.
func TestWriteStream(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	stop, returned := make(chan struct{}), make(chan struct{})
	var reported int
	go func() {
		defer close(returned)
		WriteStream(a, 7, time.Second, stop, nil, func(p []byte) { reported += len(p) })
	}()
	check := NewStreamCheck(7)
	buf := make([]byte, 1500)
	got := 0
	for got < 4096 {
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := b.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
		if !check.Check(buf[:n]) {
			off, _ := check.FirstBad()
			t.Fatalf("byte %d differs from the stream", off)
		}
		got += n
	}
	close(stop)
	b.Close() // a write blocked in the pipe fails and returns too
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("WriteStream did not return after stop")
	}
	if reported < got {
		t.Errorf("sent reported %d bytes, %d arrived", reported, got)
	}
}
