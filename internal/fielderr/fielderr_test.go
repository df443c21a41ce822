package fielderr

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

var errKind = errors.New("invalid thing")

func TestRender(t *testing.T) {
	flags := map[string]string{"LeaseTimeout": "-raft-lease", "HeartbeatTimeout": "-raft-heartbeat"}
	name := func(f string) string {
		if n, ok := flags[f]; ok {
			return n
		}
		return "?" + f
	}
	tests := []struct {
		err        *Error
		plain, cli string
	}{
		{New(errKind, "LeaseTimeout", "%v must not exceed {HeartbeatTimeout}", "1s"),
			"LeaseTimeout: 1s must not exceed HeartbeatTimeout", "-raft-lease: 1s must not exceed -raft-heartbeat"},
		{New(errKind, "Other", "no references"), "Other: no references", "?Other: no references"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.plain {
			t.Errorf("Error() = %q, want %q", got, tt.plain)
		}
		if got := tt.err.Render(name); got != tt.cli {
			t.Errorf("Render() = %q, want %q", got, tt.cli)
		}
		if !errors.Is(tt.err, errKind) {
			t.Errorf("errors.Is(%v, kind) = false", tt.err)
		}
	}
}

func TestPrefixAndAs(t *testing.T) {
	inner := New(errKind, "Listen", "clashes with {Backends[0]}")
	wrapped := fmt.Errorf("frontend api: %w", inner)
	got := Prefix(wrapped, "Frontends[1].")
	fe, ok := As(got)
	if !ok {
		t.Fatalf("As(%v) found no *Error", got)
	}
	if fe.Field != "Frontends[1].Listen" || !strings.Contains(fe.Msg, "{Frontends[1].Backends[0]}") {
		t.Errorf("prefixed = %+v", fe)
	}
	plain := errors.New("not a field error")
	if Prefix(plain, "x.") != plain {
		t.Error("Prefix changed a plain error")
	}
}
