package tlsgossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzReadFrame feeds arbitrary bytes, as an authenticated peer could send them on a packet connection, to the
// frame reader: it returns packets of 1 to MaxPacketSize bytes exactly as framed, or an error, never panics,
// and never allocates more than the bound.
func FuzzReadFrame(f *testing.F) {
	frame := func(payload []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		return append(b, payload...)
	}
	f.Add(frame([]byte("ping")))
	f.Add(append(frame([]byte{1}), frame([]byte{2, 3})...))
	f.Add(frame(nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var hdr [4]byte
		for {
			off := len(data) - r.Len()
			buf, _, err := readFrame(r, &hdr)
			if err != nil {
				if !errors.Is(err, errBadFrame) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			n := int(binary.BigEndian.Uint32(data[off:]))
			if len(buf) != n || n < 1 || n > MaxPacketSize || !bytes.Equal(buf, data[off+4:off+4+n]) {
				t.Fatalf("frame at %d: got %d bytes, header says %d", off, len(buf), n)
			}
		}
	})
}
