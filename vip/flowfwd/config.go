package flowfwd

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/vipd/vipd/internal/fielderr"
)

// TableName is the name of vipd's nftables tables, one in family ip and one in family ip6. New replaces
// whatever tables of this name it finds, so no other program may use it.
const TableName = "vipd"

// DefaultCtMark is the conntrack mark bit used when Config.CtMark is zero. It is one high bit, away from the
// low bits tools that own the whole mark tend to use; vipd sets and tests only this bit.
const DefaultCtMark uint32 = 1 << 26

var (
	// ErrInvalidConfig is wrapped by every Config validation error.
	ErrInvalidConfig = errors.New("invalid flowfwd config")
	// ErrInvalidArgument is wrapped by every error about a bad argument to Mark or Forward.
	ErrInvalidArgument = errors.New("flowfwd: invalid argument")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("flowfwd: table closed")
	// ErrUnsupported is returned by New where nftables does not exist (any OS but Linux).
	ErrUnsupported = fmt.Errorf("flowfwd: hand-over forwarding needs Linux nftables: %w", errors.ErrUnsupported)
)

// Config configures a Table. The zero value is valid.
type Config struct {
	// CtMark is the one conntrack mark bit that records "this flow's first packet was a SYN to a VIP
	// here: it is local". Zero means DefaultCtMark. Change it only if another program on the node uses
	// that bit of the conntrack mark.
	CtMark uint32
}

// Validate checks c; a zero CtMark is valid (it means DefaultCtMark).
func (c Config) Validate() error {
	if c.CtMark != 0 && bits.OnesCount32(c.CtMark) != 1 {
		return fielderr.New(ErrInvalidConfig, "CtMark",
			"%#x has %d bits set: use exactly one bit (a power of two such as %#x) that no other program on the node uses in the conntrack mark",
			c.CtMark, bits.OnesCount32(c.CtMark), DefaultCtMark)
	}
	return nil
}

func (c Config) ctMark() uint32 {
	if c.CtMark == 0 {
		return DefaultCtMark
	}
	return c.CtMark
}

// Stats counts what the rules did since New, read from the rules' nftables counters. Counts survive every
// Mark, Forward and StopForward call (they are carried over when a call replaces the rules); a few packets
// that arrive during the replacement itself may go uncounted.
type Stats struct {
	// MarkedSYNs counts SYNs to a marked VIP:port: each one made its flow local.
	MarkedSYNs uint64
	// Forwarded and ForwardedBytes count the segments handed to the draining peer (and dropped here).
	Forwarded, ForwardedBytes uint64
}
