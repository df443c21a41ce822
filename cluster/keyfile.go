package cluster

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrBadKey is wrapped by ParseKey's and ReadKeyFile's errors.
var ErrBadKey = errors.New("bad cluster key")

// maxKeyFile bounds what ReadKeyFile reads: a key is at most 44 base64 characters.
const maxKeyFile = 4096

// ParseKey decodes a cluster key as `vipd keygen` prints it: standard base64 of 16, 24 or 32 random bytes
// (AES-128/192/256 for gossip; the same bytes authenticate Raft connections). Surrounding white space is
// ignored.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty; make one with `vipd keygen`", ErrBadKey)
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64 (%v); make one with `vipd keygen`", ErrBadKey, err)
	}
	if err := checkKeyLen(k); err != nil {
		return nil, err
	}
	return k, nil
}

func checkKeyLen(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: %d bytes, want 16, 24 or 32; make one with `vipd keygen`", ErrBadKey, len(k))
}

// ReadKeyFile reads a cluster key file: one base64 key (ParseKey). It refuses a file that is missing,
// unreadable, not a regular file, readable or writable by group or others (the key would be readable by
// other users: chmod 600), or malformed.
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadKey, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o, so other users may read the key: chmod 600 %s", ErrBadKey, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrBadKey, path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes; it should hold one key from `vipd keygen`", ErrBadKey, path, maxKeyFile)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// KeyFingerprint names a key without revealing it: the first 8 hex digits of its SHA-256, as
// `base64 -d KEYFILE | sha256sum | cut -c1-8` prints them. Nodes gossip the fingerprints of their keys, and
// the Raft handshake sends them beside each proof so the verifier tries only the key it names.
func KeyFingerprint(key []byte) string {
	fp := keyFP(key)
	return hex.EncodeToString(fp[:])
}

// keyFP is KeyFingerprint's 4 bytes.
func keyFP(key []byte) [4]byte {
	sum := sha256.Sum256(key)
	return [4]byte(sum[:4])
}
