package rogue

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
)

// KeyProofHandshake returns a Handshake that speaks vipd's key mode as a client: TLS 1.3 without verifying
// the server, then a hello proving key for name (cluster/auth.go's format, written here from the outside so
// the attacker does not share the defender's code). It returns once the server answered with a hello of
// its own; a server that holds no matching key closes the connection instead, which surfaces as an error.
// With the right key it is a legitimate client, which tests use as the positive control.
func KeyProofHandshake(name string, key []byte) func(net.Conn) (net.Conn, error) {
	return func(c net.Conn) (net.Conn, error) {
		tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}) //nolint:gosec // attacker
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("rogue TLS handshake: %w", err)
		}
		cs := tc.ConnectionState()
		ekm, err := cs.ExportKeyingMaterial("EXPERIMENTAL-vipd-raft-key-proof-v1", nil, 32)
		if err != nil {
			return nil, err
		}
		if _, err := tc.Write(helloBytes(name, key, ekm)); err != nil {
			return nil, fmt.Errorf("rogue key proof: %w", err)
		}
		// The server's hello: magic, name length, name, count, count × 36 bytes.
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(tc, hdr); err != nil {
			return nil, fmt.Errorf("rogue key proof: server sent no proof: %w", err)
		}
		rest := make([]byte, int(hdr[4])+1)
		if _, err := io.ReadFull(tc, rest); err != nil {
			return nil, fmt.Errorf("rogue key proof: %w", err)
		}
		if _, err := io.ReadFull(tc, make([]byte, int(rest[len(rest)-1])*36)); err != nil {
			return nil, fmt.Errorf("rogue key proof: %w", err)
		}
		return tc, nil
	}
}

func helloBytes(name string, key, ekm []byte) []byte {
	ak := hmac.New(sha256.New, key)
	ak.Write([]byte("vipd raft auth key v1"))
	m := hmac.New(sha256.New, ak.Sum(nil))
	m.Write(ekm)
	m.Write([]byte{'C'})
	m.Write([]byte(name))
	fp := sha256.Sum256(key)
	b := append([]byte("VPD1"), byte(len(name)))
	b = append(b, name...)
	b = append(b, 1)
	b = append(b, fp[:4]...)
	return append(b, m.Sum(nil)...)
}
