package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/vipd/vipd/integration/probe"
)

// Server is the fake kube-apiserver's state: whether its health endpoints
// fail, and how long they stall. The suite flips it through the admin handler
// to make one upstream unhealthy or slow, as a real apiserver would be during
// an etcd outage. Safe for concurrent use.
type Server struct {
	name      string
	logger    *slog.Logger
	unhealthy atomic.Bool
	delay     atomic.Int64 // time.Duration added before answering /readyz and /healthz
}

// NewServer returns a healthy, fast server answering with name. A nil logger
// discards logs.
func NewServer(name string, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{name: name, logger: logger}
}

// Handler serves the API port: /readyz and /healthz (200 "ok", or 503 while
// unhealthy, after the configured delay) and every other path with the
// server's name, so a client learns which upstream the proxy picked.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", s.health)
	mux.HandleFunc("/healthz", s.health)
	mux.HandleFunc("/livez", s.health)
	mux.HandleFunc("GET /stream", stream)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, s.name)
	})
	return mux
}

// stream sends probe.StreamSource(seed) in chunks, flushed one by one, until the client goes away or
// probe.StreamFor.
func stream(w http.ResponseWriter, r *http.Request) {
	seed, err := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
	if err != nil {
		http.Error(w, "seed: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	rc := http.NewResponseController(w)
	src := probe.StreamSource(seed)
	buf := make([]byte, probe.StreamChunk)
	tick := time.NewTicker(probe.StreamEvery)
	defer tick.Stop()
	end := time.After(probe.StreamFor)
	for {
		_, _ = src.Read(buf)
		if _, err := w.Write(buf); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-end:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if d := time.Duration(s.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.unhealthy.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "unhealthy")
		return
	}
	fmt.Fprintln(w, "ok")
}

// AdminHandler serves the plain-HTTP control port the tests use:
// POST /admin/unhealthy, POST /admin/healthy (also clears any delay),
// POST /admin/slow?delay=2s, and GET /admin/state.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/unhealthy", func(w http.ResponseWriter, r *http.Request) {
		s.unhealthy.Store(true)
		s.logger.Info("admin: unhealthy")
		s.writeState(w)
	})
	mux.HandleFunc("POST /admin/healthy", func(w http.ResponseWriter, r *http.Request) {
		s.unhealthy.Store(false)
		s.delay.Store(0)
		s.logger.Info("admin: healthy")
		s.writeState(w)
	})
	mux.HandleFunc("POST /admin/slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("delay"))
		if err != nil || d < 0 {
			http.Error(w, fmt.Sprintf("delay: want a non-negative duration such as 2s, got %q", r.URL.Query().Get("delay")), http.StatusBadRequest)
			return
		}
		s.delay.Store(int64(d))
		s.logger.Info("admin: slow", "delay", d)
		s.writeState(w)
	})
	mux.HandleFunc("GET /admin/state", func(w http.ResponseWriter, r *http.Request) {
		s.writeState(w)
	})
	return mux
}

func (s *Server) writeState(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "name=%s unhealthy=%t delay=%s\n", s.name, s.unhealthy.Load(), time.Duration(s.delay.Load()))
}
