//go:build !linux

package flowfwd

import (
	"log/slog"
	"net/netip"
)

// Table is vipd's nftables tables; without Linux there are none, and New fails with ErrUnsupported.
type Table struct{}

// New fails with ErrUnsupported: nftables exists only on Linux.
func New(cfg Config, _ *slog.Logger) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrUnsupported
}

// Mark fails with ErrUnsupported.
func (*Table) Mark([]netip.Addr, []uint16) error { return ErrUnsupported }

// Forward fails with ErrUnsupported.
func (*Table) Forward(netip.Addr, string, []netip.Addr, []uint16) error { return ErrUnsupported }

// StopForward fails with ErrUnsupported.
func (*Table) StopForward() error { return ErrUnsupported }

// Stats fails with ErrUnsupported.
func (*Table) Stats() (Stats, error) { return Stats{}, ErrUnsupported }

// Close does nothing.
func (*Table) Close() error { return nil }
