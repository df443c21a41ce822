package health

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"

	"github.com/vipd/vipd/internal/fielderr"
)

// Sentinel errors of LoadTLSConfig, for errors.Is. The errors returned are
// *fielderr.Error values naming the CheckConfig field (CAFile, CertFile,
// KeyFile) and wrapping ErrInvalidConfig; the sentinels below, or the file
// system's error, are in their chain too.
var (
	// ErrNoCertificate: the CA file holds no PEM certificate.
	ErrNoCertificate = errors.New("holds no PEM certificate")
	// ErrCertKeyPair: only one of the client certificate and key was given.
	ErrCertKeyPair = errors.New("client certificate and key must be set together")
)

// fileError is a field error that also wraps the underlying cause, so
// errors.Is finds both ErrInvalidConfig and, e.g., fs.ErrNotExist.
type fileError struct {
	fe    *fielderr.Error
	cause error
}

func (e *fileError) Error() string   { return e.fe.Error() }
func (e *fileError) Unwrap() []error { return []error{e.fe, e.cause} }

func fileErr(field string, cause error, format string, args ...any) error {
	return &fileError{fe: fielderr.New(ErrInvalidConfig, field, format, args...), cause: cause}
}

// LoadTLSConfig builds the TLS configuration of https checks from
// CheckConfig's CAFile, CertFile, KeyFile and InsecureSkipVerify. caFile "" means the system roots;
// certFile and keyFile, given together, are a client certificate (kube-apiserver
// may require one for /readyz). The files are read once, now, so a bad flag is
// reported at startup rather than as failing checks.
func LoadTLSConfig(caFile, certFile, keyFile string, insecureSkipVerify bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkipVerify}
	if caFile != "" {
		pem, err := readFile("CAFile", caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fileErr("CAFile", ErrNoCertificate, "%s %s: give a PEM CA bundle", caFile, ErrNoCertificate)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		field := "KeyFile"
		if certFile == "" {
			field = "CertFile"
		}
		return nil, fileErr(field, ErrCertKeyPair, "{CertFile} and {KeyFile} must be set together")
	}
	if certFile != "" {
		certPEM, err := readFile("CertFile", certFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readFile("KeyFile", keyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fileErr("CertFile", err, "%s with key %s: %v", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// readFile reads the file of field, with a message naming the field.
func readFile(field, name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fileErr(field, err, "%s: no such file", name)
	case err != nil:
		return nil, fileErr(field, err, "%v", err)
	}
	return b, nil
}
