package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFiles writes a certificate (mode 0644) and its key (mode 0600), each atomically: a temporary file in
// the same directory, synced, then moved into place, so a reader (a running Reloader) sees the old file or
// the new one, never a partial one. Unless overwrite is true it refuses (ErrExists, before writing anything)
// if either file exists, and the final move cannot replace a file created meanwhile (a hard link, not a
// rename). The key is written before the certificate, so a Reloader that sees the new certificate finds its
// key already in place.
func WriteFiles(certPath string, certPEM []byte, keyPath string, keyPEM []byte, overwrite bool) error {
	switch {
	case certPath == "" || keyPath == "":
		return newProblem(ErrInvalidArgument, nil, "certificate and key paths must both be set")
	case filepath.Clean(certPath) == filepath.Clean(keyPath):
		return newProblem(ErrInvalidArgument, nil, "certificate and key paths are the same file %s: give two files", certPath)
	case len(certPEM) == 0 || len(keyPEM) == 0:
		return newProblem(ErrInvalidArgument, nil, "nothing to write: empty certificate or key")
	}
	if !overwrite {
		for _, p := range []string{keyPath, certPath} {
			if _, err := os.Lstat(p); err == nil {
				return newProblem(ErrExists, nil, "%s exists: remove it or choose another name (or overwrite)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("check %s: %w", p, err)
			}
		}
	}
	if err := writeAtomic(keyPath, keyPEM, 0o600, overwrite); err != nil {
		return err
	}
	return writeAtomic(certPath, certPEM, 0o644, overwrite)
}

// writeAtomic writes data to path through a temporary file in the same directory.
func writeAtomic(path string, data []byte, mode os.FileMode, overwrite bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // created 0600: the key is never exposed
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(mode); err != nil { // Chmod is not subject to the umask
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if overwrite {
		err = os.Rename(tmp.Name(), path)
	} else {
		// A link fails if path exists, so a file created since the check above is never replaced.
		if err = os.Link(tmp.Name(), path); err == nil {
			os.Remove(tmp.Name())
		} else if errors.Is(err, fs.ErrExist) {
			err = newProblem(ErrExists, err, "%s exists: remove it or choose another name (or overwrite)", path)
		} else if _, serr := os.Lstat(path); errors.Is(serr, fs.ErrNotExist) {
			// No hard links on this file system (some FUSE or FAT mounts): fall back to a rename.
			err = os.Rename(tmp.Name(), path)
		}
	}
	if err != nil {
		var p *problem
		if errors.As(err, &p) {
			return err
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes the rename durable; failure only weakens durability across a power loss, so it is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
