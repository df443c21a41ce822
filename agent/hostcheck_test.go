package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckHost(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	host := func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("::1")}, nil
	}
	base := func() Config {
		c := Default()
		c.Node, c.Bind, c.DataDir, c.BootstrapExpect = "lb1", "10.0.0.11", filepath.Join(dir, "data"), 3
		c.Backends = []string{"10.0.0.21:6443"}
		c.VIPs = []string{"10.0.0.50/24"}
		return c
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" = passes
	}{
		{"defaults", func(*Config) {}, ""},
		{"listen on the VIP", func(c *Config) { c.Listen = "10.0.0.50:6443" }, ""},
		{"listen on a foreign address", func(c *Config) { c.Listen = "10.9.9.9:6443" }, "-listen: 10.9.9.9 is not an address of this host"},
		{"bind not on host", func(c *Config) { c.Bind = "10.0.0.99" }, "-bind: 10.0.0.99 is not an address of this host"},
		{"listen on the raft port", func(c *Config) { c.Listen = ":7947" }, "-raft-port and -listen both use port 7947"},
		{"admin on the gossip port", func(c *Config) { c.HTTPAddr = "10.0.0.11:7946" }, "-gossip-port and -http-addr both use port 7946"},
		{"listen equal to http-addr", func(c *Config) { c.Listen = "127.0.0.1:7948" }, "-http-addr and -listen both use port 7948"},
		{"backend is our own listener", func(c *Config) { c.Backends = []string{"10.0.0.21:6443", "127.0.0.1:6443"} }, "-backend: 127.0.0.1:6443 is this agent's own -listen"},
		{"backend is our own VIP", func(c *Config) { c.Backends = []string{"10.0.0.50:6443"} }, "-backend: 10.0.0.50:6443 is this agent's own -listen"},
		{"backend on our host, other port", func(c *Config) { c.Backends = []string{"10.0.0.11:8443"} }, ""},
		{"data-dir is a file", func(c *Config) { c.DataDir = file }, "-data-dir: " + file + " is a file"},
		{"data-dir under a file", func(c *Config) { c.DataDir = filepath.Join(file, "raft") }, "is a file"},
		{"frontend listens twice", func(c *Config) {
			c.Backends = nil
			c.Frontends = []FrontendConfig{
				{Name: "api", Listen: ":6443", Backends: []BackendConfig{{Addr: "10.0.0.21:6443"}}},
				{Name: "rke2", Listen: "10.0.0.11:6443", Backends: []BackendConfig{{Addr: "10.0.0.21:9345"}}},
			}
		}, "frontends[1] (rke2).listen and frontends[0] (api).listen both use port 6443"},
		{"frontend backend loops", func(c *Config) {
			c.Backends = nil
			c.Frontends = []FrontendConfig{
				{Name: "api", Listen: ":6443", Backends: []BackendConfig{{Addr: "10.0.0.21:6443"}}},
				{Name: "rke2", Listen: ":9345", Backends: []BackendConfig{{Addr: "10.0.0.21:9345"}, {Addr: "localhost:6443"}}},
			}
		}, "frontends[1] (rke2).backends[1]: localhost:6443 is this agent's own frontends[0] (api).listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			specs, err := c.frontendSpecs()
			if err != nil {
				t.Fatal(err)
			}
			err = c.checkHost(specs, host)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("checkHost = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("checkHost = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestFrontendSpecs(t *testing.T) {
	c := Default()
	c.CheckInterval, c.Rise = 500_000_000, 4
	yes := true
	two := 2
	c.Frontends = []FrontendConfig{
		{Name: "api", Listen: ":6443", Backends: []BackendConfig{{Addr: "a:1"}, {Addr: "b:1", Weight: 3}},
			Check: CheckConfig{Type: "https", Path: "/livez", InsecureSkipVerify: &yes}, MinHealthy: &two},
		{Name: "rke2", Listen: ":9345", Backends: []BackendConfig{{Addr: "a:2"}}, Balance: "least-conn"},
	}
	specs, err := c.frontendSpecs()
	if err != nil {
		t.Fatal(err)
	}
	api, rke2 := specs[0], specs[1]
	if api.check.Type != "https" || api.check.Path != "/livez" || !api.check.InsecureSkipVerify || api.minHealthy != 2 || api.rise != 4 {
		t.Errorf("api frontend did not keep its own settings over the defaults: %+v", api)
	}
	if rke2.check.Type != "tcp" || rke2.interval != 500_000_000 || rke2.balance != "least-conn" || rke2.minHealthy != 1 {
		t.Errorf("rke2 frontend did not take the top-level defaults: %+v", rke2)
	}
	if got := rke2.fieldName("Interval"); got != "frontends[1] (rke2).check.interval" {
		t.Errorf("fieldName(Interval) = %q", got)
	}
	if got := rke2.fieldName("DialTimeout"); got != "-dial-timeout" {
		t.Errorf("fieldName(DialTimeout) = %q, want the global flag", got)
	}
	for _, bad := range []struct {
		fes  []FrontendConfig
		want string
	}{
		{[]FrontendConfig{{Name: "API", Listen: ":1"}}, `frontends[0].name: "API" must be`},
		{[]FrontendConfig{{Name: "a", Listen: ":1"}, {Name: "a", Listen: ":2"}}, `frontends[1].name: "a" is used twice`},
		{[]FrontendConfig{{Name: "a"}}, "frontends[0] (a).listen: required"},
		{[]FrontendConfig{{Name: "a", Listen: "6443"}}, `frontends[0] (a).listen: "6443" is not host:port`},
	} {
		c := Default()
		c.Frontends = bad.fes
		if _, err := c.frontendSpecs(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("frontendSpecs(%+v) = %v, want %q", bad.fes, err, bad.want)
		}
	}
	c.Backends = []string{"x:1"}
	if _, err := c.frontendSpecs(); err == nil || !strings.Contains(err.Error(), "-backend: given together with frontends") {
		t.Errorf("frontends plus -backend = %v", err)
	}
}
