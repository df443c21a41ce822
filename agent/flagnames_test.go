package agent

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/internal/fielderr"
	"github.com/vipd/vipd/proxy"
	"github.com/vipd/vipd/vip"
)

// TestEveryComponentFieldHasAFlag: a component names its own fields in validation errors; a field with no flag
// here would reach the operator as a Go name. Fields an operator never sets are listed as internal.
func TestEveryComponentFieldHasAFlag(t *testing.T) {
	internal := map[string]bool{
		"Logger": true, "Metrics": true, "Clock": true, "FirstDelay": true, "Version": true, "Partition": true,
		"BurstCount": true, "BurstInterval": true, "VerifyInterval": true, "AnswerWindow": true, "BarrierTimeout": true,
	}
	for _, tt := range []struct {
		cfg   any
		names map[string]string
	}{
		{health.Config{}, healthFlags},
		{health.CheckConfig{}, healthFlags},
		{proxy.Config{}, proxyFlags},
		{cluster.Config{}, clusterFlags},
		{vip.Config{}, vipFlags},
	} {
		typ := reflect.TypeOf(tt.cfg)
		for f := range typ.Fields() {
			if !f.IsExported() || internal[f.Name] {
				continue
			}
			if _, ok := tt.names[f.Name]; !ok {
				t.Errorf("%s.%s has no flag name in agent/flagnames.go", typ, f.Name)
			}
		}
	}
}

func TestFlagError(t *testing.T) {
	kind := errors.New("invalid cluster config")
	err := flagError(fielderr.New(kind, "LeaseTimeout", "1s must not exceed {HeartbeatTimeout}"), clusterFlags)
	if got, want := err.Error(), "-raft-lease: 1s must not exceed -raft-heartbeat"; got != want {
		t.Errorf("flagError = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, kind) {
		t.Errorf("flagError(%v) does not wrap ErrInvalid and the component's error", err)
	}
	if got := flagError(fielderr.New(kind, "Backends[2]", "bad"), healthFlags).Error(); !strings.HasPrefix(got, "-backend: ") {
		t.Errorf("indexed field rendered %q, want -backend", got)
	}
	plain := errors.New("open /x: permission denied")
	if got := flagError(plain, clusterFlags); got.Error() != plain.Error() || !errors.Is(got, ErrInvalid) {
		t.Errorf("flagError(plain) = %v", got)
	}
}
