package probe

import (
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// The fake apiserver's GET /stream?seed=N sends StreamSource(N) in StreamChunk-byte chunks every StreamEvery,
// for at most StreamFor: a long-lived stream whose every byte a client can check, so a segment lost,
// repeated or reordered through the proxy (or a VIP move) shows.
const (
	StreamChunk = 4 << 10
	StreamEvery = 10 * time.Millisecond
	StreamFor   = 10 * time.Minute
)

// StreamSource is the byte sequence of GET /stream?seed=seed.
func StreamSource(seed uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}
