package pki

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "lb1.pem"), filepath.Join(dir, "lb1-key.pem")
	if err := WriteFiles(cert, []byte("CERT1"), key, []byte("KEY1"), false); err != nil {
		t.Fatal(err)
	}
	assertFile(t, cert, "CERT1", 0o644)
	assertFile(t, key, "KEY1", 0o600)

	err := WriteFiles(cert, []byte("CERT2"), key, []byte("KEY2"), false)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second write without overwrite = %v, want ErrExists", err)
	}
	assertFile(t, cert, "CERT1", 0o644) // untouched
	assertFile(t, key, "KEY1", 0o600)

	// Only the cert exists: still refused, and the key is not written either.
	os.Remove(key)
	if err := WriteFiles(cert, []byte("CERT2"), key, []byte("KEY2"), false); !errors.Is(err, ErrExists) {
		t.Fatalf("write with the cert present = %v, want ErrExists", err)
	}
	if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key written although the cert exists: %v", err)
	}

	if err := WriteFiles(cert, []byte("CERT3"), key, []byte("KEY3"), true); err != nil {
		t.Fatal(err)
	}
	assertFile(t, cert, "CERT3", 0o644)
	assertFile(t, key, "KEY3", 0o600)

	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporary files left)", len(entries))
	}

	bad := []struct {
		name      string
		cert, key string
		c, k      []byte
		want      error
	}{
		{"empty path", "", key, []byte("c"), []byte("k"), ErrInvalidArgument},
		{"same file", cert, cert, []byte("c"), []byte("k"), ErrInvalidArgument},
		{"empty data", cert, key, nil, []byte("k"), ErrInvalidArgument},
	}
	for _, tt := range bad {
		if err := WriteFiles(tt.cert, tt.c, tt.key, tt.k, true); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := WriteFiles(filepath.Join(dir, "nodir", "c.pem"), []byte("c"), filepath.Join(dir, "nodir", "k.pem"), []byte("k"), false); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func assertFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("%s = %q, want %q", path, b, content)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != mode {
		t.Errorf("%s mode %04o, want %04o", path, fi.Mode().Perm(), mode)
	}
}
