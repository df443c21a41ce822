package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrStatus is wrapped by HTTP check errors when the backend answered with a
// status outside 2xx.
var ErrStatus = errors.New("unhealthy HTTP status")

// ErrScheme is returned by an HTTP checker whose HTTPOptions.Scheme is
// neither "http" nor "https".
var ErrScheme = errors.New(`scheme must be "http" or "https"`)

// HTTPOptions configure NewHTTPChecker.
type HTTPOptions struct {
	// Scheme is "http" or "https"; empty means "http".
	Scheme string
	// Path is requested with GET, e.g. "/readyz" for kube-apiserver; empty
	// means "/".
	Path string
	// TLS configures https checks (see LoadTLSConfig); nil means Go's
	// defaults (system roots, full verification). Ignored for http.
	TLS *tls.Config
}

// httpChecker issues one GET per check over a fresh connection.
type httpChecker struct {
	scheme, path string
	// target is path parsed (path and query); pathErr, the reason it would not parse. The request URL is
	// built from it and the backend's address as a structure, so that an address with an IPv6 zone
	// ([fe80::1%eth0]:6443) is escaped rather than taken for a broken %-escape.
	target  *url.URL
	pathErr error
	client  *http.Client
}

// parseCheckPath parses an HTTP check's path (and query) as a request target.
func parseCheckPath(path string) (*url.URL, error) {
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("%q is a URL, not a path", path)
	}
	return u, nil
}

// NewHTTPChecker returns a Checker that sends GET Scheme://addr/Path and
// passes on a 2xx status. Redirects are not followed (a 3xx fails: it does
// not show this backend is ready). Keep-alives are disabled so every check
// proves that a fresh connect, and TLS handshake, still works, which is what
// the proxy's next client needs; a reused connection could hide a backend that
// no longer accepts. Proxy environment variables are ignored: health checks
// always go straight to the backend.
func NewHTTPChecker(o HTTPOptions) Checker {
	scheme := o.Scheme
	if scheme == "" {
		scheme = "http"
	}
	path := o.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	tr := &http.Transport{
		Proxy:             nil,
		DialContext:       (&net.Dialer{}).DialContext,
		DisableKeepAlives: true,
		ForceAttemptHTTP2: false,
	}
	if o.TLS != nil {
		tr.TLSClientConfig = o.TLS.Clone()
	}
	target, pathErr := parseCheckPath(path)
	return &httpChecker{
		scheme:  scheme,
		path:    path,
		target:  target,
		pathErr: pathErr,
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

func (c *httpChecker) Check(ctx context.Context, addr string) error {
	if c.scheme != "http" && c.scheme != "https" {
		return fmt.Errorf("check %q: %w", c.scheme, ErrScheme)
	}
	if c.pathErr != nil {
		return fmt.Errorf("check path %q: %w", c.path, c.pathErr)
	}
	u := url.URL{Scheme: c.scheme, Host: addr, Path: c.target.Path, RawPath: c.target.RawPath, RawQuery: c.target.RawQuery}
	target := u.String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	req.Header.Set("User-Agent", "vipd-health-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	// Read a little of the body so the server is not reset mid-write; the
	// connection is closed anyway (no keep-alive).
	_, _ = io.CopyN(io.Discard, resp.Body, 4096)
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %d: %w", target, resp.StatusCode, ErrStatus)
	}
	return nil
}

var _ Checker = (*httpChecker)(nil)
