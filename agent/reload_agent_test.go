package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// echoServer echoes every connection until the test ends, and reports how many it accepted.
func echoServer(t *testing.T) (net.Listener, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	accepted := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			accepted++
			mu.Unlock()
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln, func() int { mu.Lock(); defer mu.Unlock(); return accepted }
}

// ping writes one line through c and reads it back.
func ping(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return errors.New("echo mismatch: " + string(buf))
	}
	return nil
}

// TestReloadFrontendsLive reloads a running agent: a backend added, one removed (its connections end after
// -drain-timeout, the others never), a check changed, a second frontend added and removed again, a setting
// that cannot change refused, and a broken configuration refused with nothing changed.
func TestReloadFrontendsLive(t *testing.T) {
	b1, _ := echoServer(t)
	b2, _ := echoServer(t)
	b3, accepted3 := echoServer(t)
	cfg := proxyConfig(b1.Addr().String(), b2.Addr().String())
	cfg.DrainTimeout = 300 * time.Millisecond
	var mu sync.Mutex
	next := cfg
	source := func() (Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return next, nil
	}
	setNext := func(f func(*Config)) {
		mu.Lock()
		defer mu.Unlock()
		f(&next)
	}
	a := startAgent(t, cfg, Options{Reload: source})
	proxyAddr, adminAddr := a.Addrs()
	admin := "http://" + adminAddr.String()
	backends := func() BackendsResponse {
		var br BackendsResponse
		_, body := get(t, admin+"/v1/backends")
		if err := json.Unmarshal([]byte(body), &br); err != nil {
			t.Fatalf("/v1/backends: %v", err)
		}
		return br
	}
	testutil.WaitFor(t, 5*time.Second, "both backends healthy", func() bool {
		fes := backends().Frontends
		return len(fes) == 1 && len(fes[0].Backends) == 2 &&
			fes[0].Backends[0].State == "healthy" && fes[0].Backends[1].State == "healthy"
	})

	// Ten connections through the proxy, spread over b1 and b2.
	var conns []net.Conn
	for range 10 {
		c, err := net.Dial("tcp", proxyAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := ping(c); err != nil {
			t.Fatalf("through the proxy: %v", err)
		}
		conns = append(conns, c)
	}

	// Reload: b2 out, b3 in, a faster check.
	setNext(func(c *Config) {
		c.Backends = []string{b1.Addr().String(), b3.Addr().String()}
		c.CheckInterval = 20 * time.Millisecond
	})
	start := time.Now()
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	t.Logf("reload applied in %v", time.Since(start))
	fes := backends().Frontends
	if got := len(fes[0].Backends); got != 2 || fes[0].Backends[1].Addr != b3.Addr().String() {
		t.Fatalf("after reload /v1/backends = %+v", fes)
	}
	testutil.WaitFor(t, 5*time.Second, "b3 healthy and used", func() bool {
		c, err := net.Dial("tcp", proxyAddr.String())
		if err != nil {
			return false
		}
		defer c.Close()
		return ping(c) == nil && accepted3() > 0
	})
	// Connections to b1 never notice; those to b2 end once the drain timeout passed.
	time.Sleep(cfg.DrainTimeout + 200*time.Millisecond) // the drain window itself is what is measured
	alive, closed := 0, 0
	for _, c := range conns {
		if err := ping(c); err == nil {
			alive++
		} else {
			t.Logf("connection %s: %v", c.LocalAddr(), err)
			closed++
		}
	}
	if alive == 0 || closed == 0 || alive+closed != 10 {
		t.Errorf("after the drain: %d connections alive (want those to b1), %d closed (want those to b2)", alive, closed)
	}

	// A second frontend appears, then goes again.
	setNext(func(c *Config) {
		c.Backends = nil
		c.Frontends = []FrontendConfig{
			{Name: "default", Listen: cfg.Listen, Backends: []BackendConfig{{Addr: b1.Addr().String()}, {Addr: b3.Addr().String()}}},
			{Name: "extra", Listen: "127.0.0.1:0", Backends: []BackendConfig{{Addr: b2.Addr().String()}}},
		}
	})
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload adding a frontend: %v", err)
	}
	if fes := backends().Frontends; len(fes) != 2 || fes[1].Name != "extra" {
		t.Fatalf("after adding a frontend: %+v", fes)
	}
	still := 0
	for _, c := range conns {
		if ping(c) == nil {
			still++
		}
	}
	if still != alive {
		t.Errorf("adding a frontend closed connections of the running one: %d of %d still answer", still, alive)
	}

	// Refused: a setting that cannot change, and a broken value. Nothing changes.
	setNext(func(c *Config) { c.Node = "another-name" })
	err := a.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "-node cannot change while the agent runs") {
		t.Errorf("Reload changing -node = %v", err)
	}
	setNext(func(c *Config) { c.Node = cfg.Node; c.Frontends[1].Check.Rise = -1 })
	err = a.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "frontends[1] (extra).check.rise") {
		t.Errorf("Reload with a bad rise = %v", err)
	}
	if fes := backends().Frontends; len(fes) != 2 {
		t.Fatalf("a refused reload changed the frontends: %+v", fes)
	}

	setNext(func(c *Config) { c.Frontends = c.Frontends[:1] })
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload removing a frontend: %v", err)
	}
	if fes := backends().Frontends; len(fes) != 1 || fes[0].Name != "default" {
		t.Fatalf("after removing a frontend: %+v", fes)
	}
}
