// Command apiserver is a stand-in for kube-apiserver in the docker-compose
// suite: HTTPS with a self-signed certificate, /readyz and /healthz, every
// other path answered with its own name, and a plain-HTTP admin port through
// which tests make it unhealthy or slow. It exits 0 on SIGTERM so `docker
// stop` of this PID 1 is clean.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "apiserver:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("apiserver", flag.ContinueOnError)
	name := fs.String("name", "", "name answered on / (default: hostname)")
	listen := fs.String("listen", ":6443", "HTTPS API address")
	admin := fs.String("admin", ":8080", "plain-HTTP admin address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no -name and no hostname: %w", err)
		}
		*name = h
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("name", *name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cert, err := selfSignedCert(*name, time.Now())
	if err != nil {
		return err
	}
	apiLn, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	adminLn, err := net.Listen("tcp", *admin)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listen on %s: %w", *admin, err)
	}
	logger.Info("serving", "api", apiLn.Addr().String(), "admin", adminLn.Addr().String())
	return serve(ctx, NewServer(*name, logger), cert, apiLn, adminLn)
}

// serve runs the API (TLS) and admin servers until ctx is done, then shuts
// both down; it returns only when both have stopped.
func serve(ctx context.Context, s *Server, cert tls.Certificate, apiLn, adminLn net.Listener) error {
	api := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	adm := &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- api.Serve(tls.NewListener(apiLn, api.TLSConfig)) }()
	go func() { errc <- adm.Serve(adminLn) }()

	pending := 2
	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc: // a server stopped on its own: always an error
		pending--
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs = append(errs, api.Shutdown(shutCtx), adm.Shutdown(shutCtx))
	for ; pending > 0; pending-- {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
