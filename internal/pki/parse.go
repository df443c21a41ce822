package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
)

// The PEM parsers below take untrusted operator input (any file the flags point at) and are fuzzed
// (FuzzLoadPEM, FuzzCheckBundle): they return errors wrapping ErrMalformed, never panic.

// maxPEMFile bounds what Load reads: a CA bundle of many certificates is a few tens of KiB.
const maxPEMFile = 1 << 20

// parseCerts decodes every PEM block of data, each of which must be a CERTIFICATE. Text around blocks
// (comments, as openssl writes them) is ignored.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, newProblem(ErrMalformed, nil,
				"holds a PEM %q block where only certificates (BEGIN CERTIFICATE) belong: keep keys in their own file", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, newProblem(ErrMalformed, err, "holds certificate %d, which does not parse: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, newProblem(ErrMalformed, nil, "holds no PEM certificate (BEGIN CERTIFICATE): give a PEM file, not DER or a key")
	}
	return certs, nil
}

// parseKey decodes the one private key in data: PKCS#8 ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1
// ("RSA PRIVATE KEY"); "EC PARAMETERS" blocks (openssl ecparam writes them) are skipped. Encrypted keys are
// refused: vipd starts unattended, so the key is protected by its file mode instead.
func parseKey(data []byte) (crypto.Signer, error) {
	var key crypto.Signer
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "EC PARAMETERS" {
			continue
		}
		if _, enc := b.Headers["Proc-Type"]; enc || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, newProblem(ErrMalformed, nil, "holds an encrypted key: give the key unencrypted (e.g. openssl pkey -in KEY -out KEY.plain)")
		}
		if key != nil {
			return nil, newProblem(ErrMalformed, nil, "holds more than one PEM block: keep only this node's private key in it")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "CERTIFICATE":
			return nil, newProblem(ErrMalformed, nil, "holds a certificate, not a private key: are the cert and key files swapped?")
		default:
			return nil, newProblem(ErrMalformed, nil, "holds a PEM %q block, not a private key (BEGIN PRIVATE KEY)", b.Type)
		}
		if err != nil {
			return nil, newProblem(ErrMalformed, err, "holds a private key that does not parse: %v", err)
		}
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			key = k
		case *rsa.PrivateKey:
			key = k
		case ed25519.PrivateKey:
			key = k
		default:
			return nil, newProblem(ErrMalformed, nil, "holds an unsupported %T key: use ECDSA, RSA or Ed25519", k)
		}
	}
	if key == nil {
		return nil, newProblem(ErrMalformed, nil, "holds no PEM private key (BEGIN PRIVATE KEY): give a PEM file, not DER or a certificate")
	}
	return key, nil
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}
