package agent

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Admin API limits: a request is small and quick; leave waits for the leave to finish (bounded by 5 s), so
// the write timeout leaves room for it.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 30 * time.Second
	adminIdleTimeout       = 60 * time.Second
	adminMaxHeaderBytes    = 64 << 10
	maxRequestBody         = 64 << 10
)

func (a *Agent) newAdminServer() *http.Server {
	return &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// guardRead admits a /v1 read only with a Host that is an IP literal or localhost, so a page on a name the
// attacker controls (DNS rebinding) cannot read the cluster's state through the operator's browser.
func (a *Agent) guardRead(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host) {
			http.Error(w, "Host must be an IP address or localhost", http.StatusForbidden)
			return
		}
		h(w, r)
	})
}

// guardWrite admits a request that changes the cluster only if no web page could have sent it: POST (the
// route), an IP or localhost Host, Content-Type application/json (a cross-site page cannot send that without
// a CORS preflight, which this API never grants), no Origin or Sec-Fetch-Site header (the CLI never sends
// them, browsers always do) — and only from this machine, unless -http-token-file is set, in which case every
// write needs its bearer token.
func (a *Agent) guardWrite(h http.HandlerFunc) http.Handler {
	return a.guardRead(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
			http.Error(w, "refused: a browser request may not change the cluster (use the vipd CLI)", http.StatusForbidden)
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
			return
		}
		if token := a.token(); token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="vipd"`)
				http.Error(w, "missing or wrong bearer token (give the CLI -http-token-file)", http.StatusUnauthorized)
				return
			}
		} else if !fromLoopback(r.RemoteAddr) {
			http.Error(w, "refused: changes from another machine need the agent's -http-token-file and its bearer token", http.StatusForbidden)
			return
		}
		h(w, r)
	})
}

// hostAllowed reports whether a request's Host names this machine by an IP literal or "localhost".
func hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// isLoopbackListen reports whether a listening address (validated host:port) only accepts loopback clients.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// readTokenFile reads -http-token-file: a secret like a key, so it must not be readable by others.
func readTokenFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", invalid("http-token-file", "%v", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", invalid("http-token-file", "%s is readable by others (mode %04o): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", invalid("http-token-file", "%v", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", invalid("http-token-file", "%s holds a token of %d characters, want at least 16: e.g. vipd keygen > %s", path, len(tok), path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", invalid("http-token-file", "%s must hold one token on one line", path)
	}
	return tok, nil
}

func (a *Agent) warnAdminExposure() {
	switch {
	case a.adminLoopback:
	case a.token() == "":
		a.log.Warn(fmt.Sprintf("admin API listens on %s beyond loopback: anyone who reaches it can read the cluster's state; changes (leave, force-leave, reload, keyring) are taken from this machine only until you give -http-token-file", a.cfg.HTTPAddr))
	default:
		a.log.Warn(fmt.Sprintf("admin API listens on %s beyond loopback: reads are open to whoever reaches it; changes need the bearer token of -http-token-file", a.cfg.HTTPAddr))
	}
}

// token is the admin API's bearer token in force ("" = none); a reload may replace it.
func (a *Agent) token() string {
	if t := a.adminToken.Load(); t != nil {
		return *t
	}
	return ""
}

// fromLoopback reports whether a request's peer (http.Request.RemoteAddr) is this machine.
func fromLoopback(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
