package health

import "strings"

// Check types, as -check spells them.
const (
	CheckTCP   = "tcp"
	CheckHTTP  = "http"
	CheckHTTPS = "https"
)

// CheckConfig says how to probe a backend: a TCP connect, or an HTTP(S) GET of Path that must answer 2xx.
type CheckConfig struct {
	// Type is CheckTCP, CheckHTTP or CheckHTTPS.
	Type string
	// Path is the GET path of http/https checks; it must start with "/".
	Path string
	// CAFile verifies https backends ("" = the system roots); CertFile and KeyFile, set together, are a
	// client certificate; InsecureSkipVerify skips verification. All four need Type https.
	CAFile, CertFile, KeyFile string
	InsecureSkipVerify        bool
}

// NewChecker validates c (errors are *fielderr.Error naming the CheckConfig field) and returns its Checker.
// TLS files are read now, so a bad file is reported before the agent starts rather than as failing checks.
func NewChecker(c CheckConfig) (Checker, error) {
	if c.Type != CheckTCP && c.Type != CheckHTTP && c.Type != CheckHTTPS {
		return nil, invalid("Type", "%q is not one of tcp, http, https", c.Type)
	}
	if c.Type != CheckHTTPS && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.InsecureSkipVerify) {
		return nil, invalid("Type", "TLS options ({CAFile}, {CertFile}, {KeyFile}, {InsecureSkipVerify}) need https, got %s", c.Type)
	}
	if c.Type == CheckTCP {
		return NewTCPChecker(), nil
	}
	if !strings.HasPrefix(c.Path, "/") {
		return nil, invalid("Path", "must start with /, got %q: use e.g. /readyz", c.Path)
	}
	if _, err := parseCheckPath(c.Path); err != nil {
		return nil, invalid("Path", "%q is not a valid URL path (%v): escape it, e.g. %%20 for a space", c.Path, err)
	}
	opts := HTTPOptions{Scheme: c.Type, Path: c.Path}
	if c.Type == CheckHTTPS {
		tlsCfg, err := LoadTLSConfig(c.CAFile, c.CertFile, c.KeyFile, c.InsecureSkipVerify)
		if err != nil {
			return nil, err
		}
		opts.TLS = tlsCfg
	}
	return NewHTTPChecker(opts), nil
}
