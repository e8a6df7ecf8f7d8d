// Package admin serves meridian's HTTP admin interface: Prometheus metrics,
// liveness and readiness, and the JSON API and pages other packages mount.
// It listens on loopback unless TLS is configured (config validation
// enforces that), and with a client CA it demands client certificates.
package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"meridian/config"
)

// Options configures a Server.
type Options struct {
	HTTP     config.HTTP
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
}

// Server is the admin HTTP server. Handle adds routes before Run.
type Server struct {
	opts  Options
	mux   *http.ServeMux
	ready atomic.Bool
	addr  atomic.Pointer[net.Addr]
}

// New returns a Server with /metrics, /healthz and /readyz; nothing listens yet.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s
}

// Handle mounts h at pattern (http.ServeMux syntax). Call it before Run.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// JSON returns a handler that serves what build returns, as indented JSON.
func JSON(build func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(build())
	})
}

// SetReady sets what /readyz reports: ready means the node answers DNS.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Addr returns the bound address once Run has bound it, else nil.
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Run listens and serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	tlsConf, err := s.tlsConfig()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", s.opts.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.opts.HTTP.Listen, err)
	}
	addr := l.Addr()
	s.addr.Store(&addr)
	if tlsConf != nil {
		l = tls.NewListener(l, tlsConf)
	}
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn)}
	s.opts.Logger.Info("admin http listening", "addr", addr.String(), "tls", tlsConf != nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	if serveErr := <-done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

// tlsConfig loads the admin TLS identity and client CA, or returns nil for plain HTTP.
func (s *Server) tlsConfig() (*tls.Config, error) {
	h := s.opts.HTTP
	if h.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(h.TLSCert, h.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("admin: load tls_cert/tls_key: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if h.ClientCA != "" {
		pem, err := os.ReadFile(h.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("admin: read client_ca: %w", err)
		}
		c.ClientCAs = x509.NewCertPool()
		if !c.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin: client_ca %s holds no PEM certificate", h.ClientCA)
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}
