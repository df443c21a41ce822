package pki

import (
	"errors"
	"fmt"
)

// Sentinels for errors.Is. Every error of Load is a *FileError wrapping one of them (except ErrInvalidNode for
// a bad node argument); creation and WriteFiles return ErrInvalidArgument, ErrExists or wrapped I/O errors.
var (
	// ErrMissing: a file is not set or does not exist.
	ErrMissing = errors.New("file missing")
	// ErrUnreadable: a file exists but cannot be read, or is not a regular file.
	ErrUnreadable = errors.New("file unreadable")
	// ErrInsecureMode: the key file is accessible by group or others.
	ErrInsecureMode = errors.New("key file accessible by others")
	// ErrMalformed: a file is not the PEM it should be (no block, a block of the wrong type, does not parse).
	ErrMalformed = errors.New("malformed PEM file")
	// ErrKeyMismatch: the key is not the certificate's key.
	ErrKeyMismatch = errors.New("key does not match certificate")
	// ErrWrongNode: the certificate does not name the node.
	ErrWrongNode = errors.New("certificate does not name the node")
	// ErrExpired: a certificate's NotAfter has passed.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: a certificate's NotBefore is in the future.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrUntrusted: the CA bundle does not verify the certificate.
	ErrUntrusted = errors.New("certificate not signed by the CA")
	// ErrNotCA: the CA file holds a certificate that is not a CA.
	ErrNotCA = errors.New("not a CA certificate")
	// ErrUsage: the certificate is not usable as a node certificate (a CA, or lacking ServerAuth and ClientAuth).
	ErrUsage = errors.New("certificate not usable for a node")
	// ErrInvalidNode: a node name outside [A-Za-z0-9._-]{1,63}.
	ErrInvalidNode = errors.New("invalid node name")
	// ErrInvalidArgument: bad input to NewCA, NewNodeCert or WriteFiles.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrExists: WriteFiles would overwrite a file.
	ErrExists = errors.New("file exists")
)

// Which file of a Files a FileError is about; the values are Files' field names, so the caller can map them to
// its own spelling (-tls-ca-file, …) as with fielderr.
const (
	WhichCA   = "CA"
	WhichCert = "Cert"
	WhichKey  = "Key"
)

// FileError is an error of one file of a node's TLS identity: Which is "CA", "Cert" or "Key" (the Files field),
// Path the file, Err what is wrong and the fix. Error() reads like
// "key file /etc/vipd/lb1-key.pem is readable by others (mode 0644): chmod 600 it".
type FileError struct {
	Which string
	Path  string
	Err   error
}

func (e *FileError) Error() string {
	label := map[string]string{WhichCA: "CA", WhichCert: "cert", WhichKey: "key"}[e.Which]
	if label == "" {
		label = e.Which
	}
	if e.Path == "" {
		return fmt.Sprintf("%s file %v", label, e.Err)
	}
	return fmt.Sprintf("%s file %s %v", label, e.Path, e.Err)
}

// Unwrap returns Err, so errors.Is(err, ErrExpired) and the like work.
func (e *FileError) Unwrap() error { return e.Err }

// problem is an error message with a sentinel kind and an optional cause, both visible to errors.Is/As.
type problem struct {
	kind  error
	cause error
	msg   string
}

func (p *problem) Error() string { return p.msg }

func (p *problem) Unwrap() []error {
	if p.cause == nil {
		return []error{p.kind}
	}
	return []error{p.kind, p.cause}
}

func newProblem(kind, cause error, format string, args ...any) error {
	return &problem{kind: kind, cause: cause, msg: fmt.Sprintf(format, args...)}
}

func fileErr(which, path string, kind, cause error, format string, args ...any) *FileError {
	return &FileError{Which: which, Path: path, Err: newProblem(kind, cause, format, args...)}
}
