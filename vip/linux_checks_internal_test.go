//go:build linux

package vip

import (
	"errors"
	"strings"
	"testing"
)

func TestCapabilityChecks(t *testing.T) {
	tests := []struct {
		name    string
		capEff  string
		wantErr string // substring; "" = no error
	}{
		{"root", "000001ffffffffff", ""},
		{"admin and raw only", "0000000000003000", ""},
		{"no admin", "0000000000002000", "-vip needs CAP_NET_ADMIN to add addresses: run as root or grant the capability"},
		{"no raw", "0000000000001000", "-vip needs CAP_NET_RAW to answer and announce ARP: run as root or grant the capability"},
		{"none", "0000000000000000", "CAP_NET_ADMIN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eff, err := parseCapEff("Name:\tvipd\nCapInh:\t0000000000000000\nCapEff:\t" + tc.capEff + "\nCapBnd:\t0\n")
			if err != nil {
				t.Fatal(err)
			}
			err = checkCaps(eff)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMissingCapability) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrMissingCapability containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := parseCapEff("Name:\tvipd\n"); err == nil {
		t.Fatal("parseCapEff accepted a status without CapEff")
	}
}
