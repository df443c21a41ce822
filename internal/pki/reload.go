package pki

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// recheckEvery is how often Current looks at the files: often enough that a rotation applies within a
// second, rarely enough that calling Current on every handshake costs three stat calls per second at most.
const recheckEvery = time.Second

// Reloader keeps a Bundle current without a restart, as kubeadm or cert-manager rotate files in place.
//
// Current re-stats the three files at most once per second and reloads them (with every check of Load) when
// a file's mtime, size or identity (device and inode: a rename over it, a Kubernetes secret's symlink swap)
// changed. If the new files fail Load, it keeps serving the previous bundle and logs the error once per
// distinct failure; it then retries every second, so a certificate that is not yet valid starts being used
// when it becomes valid, and a rotation that writes the certificate and the key one after the other succeeds
// once both are written. When the bundle in use expires and nothing replaces it, that is logged once.
//
// A file rewritten in place with the same size within the file system's timestamp granularity is not
// noticed; every common tool writes a new file and renames it, which is.
//
// Safe for concurrent use; starts no goroutine.
type Reloader struct {
	files Files
	node  string
	log   *slog.Logger
	clock func() time.Time

	mu        sync.Mutex
	bundle    *Bundle
	stats     [3]os.FileInfo // of the files last loaded successfully
	checked   time.Time      // last look at the files
	failing   bool           // the files changed since the last successful load and do not load
	lastErr   string         // last failure logged, so each distinct failure is logged once
	warnedExp bool           // the expiry of bundle was logged
}

// NewReloader loads the files for node (see Load) and returns a Reloader serving them. log nil discards;
// clock nil is time.Now.
func NewReloader(f Files, node string, log *slog.Logger, clock func() time.Time) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	r := &Reloader{files: f, node: node, log: log, clock: clock}
	stats := r.statAll()
	now := clock()
	b, err := Load(f, node, now)
	if err != nil {
		return nil, err
	}
	r.bundle, r.stats, r.checked = b, stats, now
	return r, nil
}

// Files returns the files the Reloader watches.
func (r *Reloader) Files() Files { return r.files }

// Node returns the node name the certificates must carry.
func (r *Reloader) Node() string { return r.node }

// Current returns the bundle in use, reloading it first if the files changed (at most one look per second).
// It never returns nil.
func (r *Reloader) Current() *Bundle {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if now.Sub(r.checked) < recheckEvery && !now.Before(r.checked) {
		return r.bundle
	}
	r.checked = now
	stats := r.statAll()
	if r.failing || changed(r.stats, stats) {
		r.reload(stats, now)
	}
	if now.After(r.bundle.NotAfter) && !r.warnedExp {
		r.warnedExp = true
		r.log.Error("TLS certificate in use has expired and no valid replacement was found; peers will refuse this node",
			"cert_file", r.files.Cert, "not_after", r.bundle.NotAfter.UTC().Format(time.RFC3339))
	}
	return r.bundle
}

// reload loads the files; stats were taken before reading them, so a change during the load is seen next time.
func (r *Reloader) reload(stats [3]os.FileInfo, now time.Time) {
	b, err := Load(r.files, r.node, now)
	if err != nil {
		r.failing = true
		if msg := err.Error(); msg != r.lastErr {
			r.lastErr = msg
			r.log.Error("TLS files changed but do not load; still using the previous certificate", "err", err,
				"not_after", r.bundle.NotAfter.UTC().Format(time.RFC3339))
		}
		return
	}
	r.bundle, r.stats, r.failing, r.lastErr, r.warnedExp = b, stats, false, "", false
	r.log.Info("TLS certificates reloaded", "cert_file", r.files.Cert, "serial", fmt.Sprintf("%x", b.Cert.Leaf.SerialNumber),
		"not_after", b.NotAfter.UTC().Format(time.RFC3339))
}

func (r *Reloader) statAll() [3]os.FileInfo {
	var out [3]os.FileInfo
	for i, p := range []string{r.files.CA, r.files.Cert, r.files.Key} {
		if fi, err := os.Stat(p); err == nil {
			out[i] = fi
		}
	}
	return out
}

// changed reports whether any file differs in identity, mtime or size (or appeared or vanished).
func changed(old, cur [3]os.FileInfo) bool {
	for i := range old {
		o, c := old[i], cur[i]
		if (o == nil) != (c == nil) {
			return true
		}
		if o == nil {
			continue
		}
		if !os.SameFile(o, c) || !o.ModTime().Equal(c.ModTime()) || o.Size() != c.Size() {
			return true
		}
	}
	return false
}
