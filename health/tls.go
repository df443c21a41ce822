package health

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Sentinel errors of LoadTLSConfig, for errors.Is. The messages returned
// name the flag to fix and are meant to be printed verbatim by the CLI.
var (
	// ErrNoCertificate: the CA file holds no PEM certificate.
	ErrNoCertificate = errors.New("holds no PEM certificate")
	// ErrCertKeyPair: only one of the client certificate and key was given.
	ErrCertKeyPair = errors.New("-check-cert-file and -check-key-file must be set together")
)

// flagError is an error whose message is written for the operator (naming
// the flag) while errors.Is still sees the underlying cause.
type flagError struct {
	msg string
	err error
}

func (e *flagError) Error() string { return e.msg }
func (e *flagError) Unwrap() error { return e.err }

// LoadTLSConfig builds the TLS configuration of https checks from the
// -check-ca-file, -check-cert-file, -check-key-file and
// -check-insecure-skip-verify flags. caFile "" means the system roots;
// certFile and keyFile, given together, are a client certificate (kube-apiserver
// may require one for /readyz). The files are read once, now, so a bad flag is
// reported at startup rather than as failing checks.
func LoadTLSConfig(caFile, certFile, keyFile string, insecureSkipVerify bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkipVerify}
	if caFile != "" {
		pem, err := readFlagFile("-check-ca-file", caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &flagError{
				msg: fmt.Sprintf("-check-ca-file %s %s", caFile, ErrNoCertificate),
				err: ErrNoCertificate,
			}
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, ErrCertKeyPair
	}
	if certFile != "" {
		certPEM, err := readFlagFile("-check-cert-file", certFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readFlagFile("-check-key-file", keyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("-check-cert-file %s / -check-key-file %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// readFlagFile reads the file named by flag, with a message naming the flag.
func readFlagFile(flag, name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &flagError{msg: fmt.Sprintf("%s %s: no such file", flag, name), err: err}
	case err != nil:
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return b, nil
}
