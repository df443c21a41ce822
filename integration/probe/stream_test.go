package probe

import "testing"

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
