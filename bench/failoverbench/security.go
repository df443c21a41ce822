package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vipd/vipd/internal/pki"
)

// security is how the benchmarked agents authenticate each other: as users would (a cluster key, the
// default), with mutual TLS, or -insecure to compare.
type security struct {
	mode string // key, mtls or insecure
	dir  string // where the key and certificates are
}

// prepare writes what the mode needs for nodes into dir.
func (s security) prepare(nodes []string, ips []string) error {
	switch s.mode {
	case "insecure":
		return nil
	case "key":
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(s.dir, "cluster.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	case "mtls":
		caCert, caKey, err := pki.NewCA("failoverbench CA", 24*time.Hour)
		if err != nil {
			return err
		}
		if err := pki.WriteFiles(filepath.Join(s.dir, "ca.pem"), caCert, filepath.Join(s.dir, "ca-key.pem"), caKey, true); err != nil {
			return err
		}
		for i, n := range nodes {
			cert, key, err := pki.NewNodeCert(caCert, caKey, n, []net.IP{net.ParseIP(ips[i])}, nil, 12*time.Hour)
			if err != nil {
				return err
			}
			if err := pki.WriteFiles(filepath.Join(s.dir, n+".pem"), cert, filepath.Join(s.dir, n+"-key.pem"), key, true); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("-security %q: want key, mtls or insecure", s.mode)
}

// flags are node's agent flags for the mode.
func (s security) flags(node string) []string {
	switch s.mode {
	case "key":
		return []string{"-encrypt-file", filepath.Join(s.dir, "cluster.key")}
	case "mtls":
		return []string{"-tls-ca-file", filepath.Join(s.dir, "ca.pem"), "-tls-cert-file", filepath.Join(s.dir, node+".pem"),
			"-tls-key-file", filepath.Join(s.dir, node+"-key.pem")}
	}
	return []string{"-insecure"}
}
