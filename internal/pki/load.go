package pki

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Files names the PEM files of one node's TLS identity (flags -tls-ca-file, -tls-cert-file, -tls-key-file).
//
// CA holds one or more CA certificates, all trusted (during a CA rotation: the old and the new). Cert holds
// the node certificate first, then any intermediates. Key holds the certificate's private key, unencrypted,
// mode 0600 or stricter.
type Files struct{ CA, Cert, Key string }

// Bundle is one loaded, checked identity.
type Bundle struct {
	// CAs verifies peers.
	CAs *x509.CertPool
	// Cert is this node's certificate chain and key, with Leaf set.
	Cert tls.Certificate
	// NotAfter is when Cert's leaf expires.
	NotAfter time.Time
}

// Load reads and checks the files for node at time now: each file exists, is a regular file and is readable;
// the key file is not accessible by group or others (mode & 0o077 == 0, like ssh); each parses (PEM; the CA
// file holds only CA certificates, at least one valid now; the key is the certificate's); the certificate names node, is
// not a CA, is within its validity, and the CA bundle verifies it for ExtKeyUsage ServerAuth and ClientAuth.
//
// Errors are *FileError values naming which file and the fix, wrapping a sentinel (ErrMissing, ErrExpired, …),
// e.g. "key file /etc/vipd/lb1-key.pem is readable by others (mode 0644): chmod 600 it". An invalid node
// name is an error wrapping ErrInvalidNode, not a FileError.
func Load(f Files, node string, now time.Time) (*Bundle, error) {
	if !ValidNodeName(node) {
		return nil, newProblem(ErrInvalidNode, nil, "node name %q: use 1 to 63 characters of A-Z a-z 0-9 . _ -", node)
	}
	caPEM, err := readFile(WhichCA, f.CA, false)
	if err != nil {
		return nil, err
	}
	certPEM, err := readFile(WhichCert, f.Cert, false)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(WhichKey, f.Key, true)
	if err != nil {
		return nil, err
	}
	return checkBundle(f, caPEM, certPEM, keyPEM, node, now)
}

// readFile reads one of the files with the checks that need the file system; secret adds the mode check.
func readFile(which, path string, secret bool) ([]byte, error) {
	if path == "" {
		return nil, fileErr(which, path, ErrMissing, nil, "is not set: a node with TLS needs its CA, certificate and key files")
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileErr(which, path, ErrMissing, err, "does not exist: fix the path, or create it with vipd tls")
	}
	if err != nil {
		return nil, fileErr(which, path, ErrUnreadable, err, "cannot be read: %v", err)
	}
	if fi.IsDir() {
		return nil, fileErr(which, path, ErrUnreadable, nil, "is a directory: give the PEM file")
	}
	if !fi.Mode().IsRegular() {
		return nil, fileErr(which, path, ErrUnreadable, nil, "is not a regular file (%v): give the PEM file", fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); secret && perm&0o077 != 0 {
		what := "readable"
		if perm&0o044 == 0 {
			what = "writable"
		}
		return nil, fileErr(which, path, ErrInsecureMode, nil, "is %s by others (mode %04o): chmod 600 it", what, perm)
	}
	if fi.Size() > maxPEMFile {
		return nil, fileErr(which, path, ErrMalformed, nil, "is %d bytes, more than any PEM %s file: check the path", fi.Size(), kindOf(which))
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fileErr(which, path, ErrUnreadable, err, "cannot be read (%v): let the user vipd runs as read it", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxPEMFile+1))
	if err != nil {
		return nil, fileErr(which, path, ErrUnreadable, err, "cannot be read: %v", err)
	}
	return data, nil
}

func kindOf(which string) string {
	switch which {
	case WhichCA:
		return "CA"
	case WhichKey:
		return "key"
	}
	return "certificate"
}

// checkBundle is Load without the file system: every check on the three files' contents. It is pure (the
// fuzz target FuzzCheckBundle drives it) and f only names the files in errors.
func checkBundle(f Files, caPEM, certPEM, keyPEM []byte, node string, now time.Time) (*Bundle, error) {
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, &FileError{Which: WhichCA, Path: f.CA, Err: err}
	}
	pool := x509.NewCertPool()
	var validityErr error // of the first CA outside its validity; an error only if no CA is valid
	valid := 0
	for i, ca := range cas {
		if !ca.BasicConstraintsValid || !ca.IsCA {
			return nil, fileErr(WhichCA, f.CA, ErrNotCA, nil,
				"holds certificate %d (%s), which is not a CA: give the CA certificate that issued the node certificates (ca.pem of vipd tls ca create)",
				i+1, describe(ca))
		}
		// An expired CA left in the bundle after a rotation is harmless (nothing verifies through it), so it
		// is kept rather than refused.
		if err := checkValidity(ca, now); err != nil {
			validityErr = cmp.Or(validityErr, err)
		} else {
			valid++
		}
		pool.AddCert(ca)
	}
	if valid == 0 {
		return nil, &FileError{Which: WhichCA, Path: f.CA, Err: validityErr}
	}

	chain, err := parseCerts(certPEM)
	if err != nil {
		return nil, &FileError{Which: WhichCert, Path: f.Cert, Err: err}
	}
	leaf := chain[0]
	if leaf.IsCA {
		return nil, fileErr(WhichCert, f.Cert, ErrUsage, nil,
			"holds a CA certificate (%s) first: give this node's certificate (vipd tls cert create)", describe(leaf))
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, &FileError{Which: WhichKey, Path: f.Key, Err: err}
	}
	if !keyMatches(leaf, key) {
		return nil, fileErr(WhichKey, f.Key, ErrKeyMismatch, nil,
			"is not the key of the certificate in %s (%s): give the key created with that certificate", f.Cert, describe(leaf))
	}
	if names := NodeNames(leaf); !HasName(names, node) {
		return nil, fileErr(WhichCert, f.Cert, ErrWrongNode, nil,
			"names nodes %q (DNS or vipd:// URI SANs), not %q: create a certificate for this node (vipd tls cert create -node %s)",
			names, node, node)
	}
	if err := checkValidity(leaf, now); err != nil {
		return nil, &FileError{Which: WhichCert, Path: f.Cert, Err: err}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if err := verifyNode(fmt.Sprintf("holds a certificate (%s) that", describe(leaf)), leaf, pool, inter, now); err != nil {
		return nil, &FileError{Which: WhichCert, Path: f.Cert, Err: withCAPath(err, f.CA)}
	}
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	return &Bundle{
		CAs:      pool,
		Cert:     tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		NotAfter: leaf.NotAfter,
	}, nil
}

// checkValidity checks c's validity period at now.
func checkValidity(c *x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	if now.Before(c.NotBefore) {
		return newProblem(ErrNotYetValid, nil, "holds a certificate (%s) not valid before %s (now %s): check this host's clock, or wait",
			describe(c), c.NotBefore.UTC().Format(layout), now.UTC().Format(layout))
	}
	if now.After(c.NotAfter) {
		return newProblem(ErrExpired, nil, "holds a certificate (%s) that expired at %s (now %s): issue a new one",
			describe(c), c.NotAfter.UTC().Format(layout), now.UTC().Format(layout))
	}
	return nil
}

// verifyNode verifies a node certificate against roots for both ServerAuth and ClientAuth (x509 accepts a
// chain if it allows any one listed usage, so each is checked on its own). what introduces the certificate in
// the message, e.g. `holds a certificate (…) that` for a file, `peer certificate (…)` for a connection.
func verifyNode(what string, leaf *x509.Certificate, roots, inter *x509.CertPool, now time.Time) error {
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err == nil {
			continue
		}
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
			return newProblem(ErrUsage, err, "%s lacks extended key usage %s: a node certificate needs ServerAuth and ClientAuth (vipd tls cert create)",
				what, usageName(usage))
		}
		return newProblem(ErrUntrusted, err, "%s is not verified by the CA bundle (%v)", what, err)
	}
	return nil
}

// withCAPath adds the CA file and the fix to verifyNode's untrusted error, which Load reports on the cert file.
func withCAPath(err error, caPath string) error {
	var p *problem
	if errors.As(err, &p) && p.kind == ErrUntrusted {
		return &problem{kind: p.kind, cause: p.cause,
			msg: fmt.Sprintf("%s: issue it from the CA in %s, or point the CA file at its issuer", p.msg, caPath)}
	}
	return err
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "ServerAuth"
	}
	return "ClientAuth"
}

// describe names a certificate in a message: subject and serial, enough to find it with openssl.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("subject %q, serial %x", c.Subject.String(), c.SerialNumber)
}
