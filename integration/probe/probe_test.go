package probe

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMeasure(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(ms int, b string) Sample { return Sample{Start: at(ms), OK: true, Connected: true, Backend: b} }
	bad := func(ms int) Sample { return Sample{Start: at(ms)} }
	tests := []struct {
		name          string
		samples       []Sample
		fault, end    int
		wantLongest   time.Duration
		wantRecovered bool
		wantFailed    int
	}{
		{"no outage", []Sample{ok(0, "a"), ok(10, "a"), ok(20, "b"), ok(30, "a")}, 5, 40, 10 * time.Millisecond, true, 0},
		{"gap counted from last success before fault",
			[]Sample{ok(0, "a"), ok(10, "a"), bad(20), bad(30), bad(40), ok(250, "b"), ok(260, "b")}, 25, 300, 240 * time.Millisecond, true, 2},
		{"never recovered runs to end",
			[]Sample{ok(0, "a"), bad(20), bad(30)}, 15, 1000, 1000 * time.Millisecond, false, 2},
		{"no success before fault starts at fault",
			[]Sample{bad(0), ok(500, "a")}, 100, 600, 400 * time.Millisecond, true, 0},
		{"unsorted input", []Sample{ok(250, "b"), bad(20), ok(0, "a"), ok(10, "a")}, 15, 300, 240 * time.Millisecond, true, 1},
		{"samples after end ignored", []Sample{ok(0, "a"), bad(20), ok(900, "a")}, 10, 500, 500 * time.Millisecond, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Measure(tt.samples, at(tt.fault), at(tt.end))
			if o.Longest != tt.wantLongest || o.Recovered != tt.wantRecovered || o.Failed != tt.wantFailed {
				t.Errorf("Measure = longest %s recovered %t failed %d, want %s %t %d",
					o.Longest, o.Recovered, o.Failed, tt.wantLongest, tt.wantRecovered, tt.wantFailed)
			}
		})
	}
}

func TestMeasureCountsErrorKinds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	bad := func(ms int, err string) Sample {
		return Sample{Start: t0.Add(time.Duration(ms) * time.Millisecond), Err: err}
	}
	samples := []Sample{
		bad(10, "dial tcp 172.28.1.50:6443: i/o timeout"),
		bad(20, "dial tcp 172.28.1.50:6443: i/o timeout"),
		bad(30, "dial tcp 172.28.1.50:6443: connect: connection refused"),
		bad(40, "read answer to GET /: EOF"),
		bad(50, ""),
	}
	o := Measure(samples, t0, t0.Add(time.Second))
	want := map[string]int{"i/o timeout": 2, "connection refused": 1, "EOF": 1, "unknown": 1}
	if fmt.Sprint(o.Errors) != fmt.Sprint(want) || o.Failed != 5 {
		t.Errorf("Measure errors = %v (%d failed), want %v (5)", o.Errors, o.Failed, want)
	}
}

func TestSettled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(ms int) Sample { return Sample{Start: at(ms), OK: true} }
	bad := func(ms int) Sample { return Sample{Start: at(ms)} }
	tests := []struct {
		name    string
		samples []Sample
		now     int
		want    bool
	}{
		{"only successes", []Sample{ok(0), ok(100), ok(200), ok(300)}, 320, true},
		{"early success then failures", []Sample{ok(0), ok(30), bad(60), bad(300)}, 320, false},
		{"failure inside the quiet span", []Sample{bad(150), ok(200), ok(300)}, 320, false},
		{"failure before the quiet span", []Sample{bad(0), ok(200), ok(300)}, 320, true},
		{"nothing recent", []Sample{ok(0)}, 1000, false},
		{"no samples", nil, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(Config{})
			for _, s := range tt.samples {
				p.record(s)
			}
			if got := p.Settled(at(tt.now), 200*time.Millisecond); got != tt.want {
				t.Errorf("Settled = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestProberHTTPSLearnsBackend(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "api7") }))
	t.Cleanup(srv.Close)
	p := New(Config{Addr: srv.Listener.Addr().String(), HTTPS: true})
	s := p.Once(context.Background())
	if !s.OK || s.Backend != "api7" {
		t.Fatalf("Once = %+v, want OK from api7", s)
	}
	// A TLS handshake and a request take well over a microsecond; a zero
	// Latency means the deferred measurement was lost.
	if s.Latency < time.Microsecond {
		t.Errorf("Once latency = %s, want the measured duration of the probe", s.Latency)
	}
}

func TestProberHTTPSNon200Fails(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) }))
	t.Cleanup(srv.Close)
	s := New(Config{Addr: srv.Listener.Addr().String(), HTTPS: true}).Once(context.Background())
	if s.OK || !s.Connected || !strings.Contains(s.Err, "503") {
		t.Fatalf("Once = %+v, want connected, not OK, error naming 503", s)
	}
}

func TestProberRunRecordsOutage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	p := New(Config{Addr: addr, Interval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, 5*time.Second, func() bool { return p.OKSince(time.Now().Add(-time.Second)) })
	fault := time.Now()
	ln.Close()                         // the port now refuses connections
	time.Sleep(200 * time.Millisecond) // the outage being measured, not a wait for a condition
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken by someone else meanwhile: %v", addr, err)
	}
	t.Cleanup(func() { ln2.Close() })
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	healed := time.Now()
	waitFor(t, 5*time.Second, func() bool { return p.OKSince(healed) })
	o := p.Measure(fault, time.Now())
	if !o.Recovered || o.Longest < 200*time.Millisecond || o.Longest > 2*time.Second || o.Failed == 0 {
		t.Errorf("Measure = %+v, want recovered, ~200ms longest, some failures", o)
	}
}

func TestGetOnKeepsConnection(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "api1") }))
	var conns atomic.Int32
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := NewTLS(c)
	br := bufio.NewReader(tc)
	for i := range 3 {
		b, err := GetOn(tc, br, time.Now().Add(5*time.Second))
		if err != nil || b != "api1" {
			t.Fatalf("GetOn #%d = %q, %v", i, b, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("server saw %d connections, want 1", n)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
