package admin

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
	"meridian/internal/certtest"
)

// start runs s until the test ends and returns its base URL.
func start(t *testing.T, s *Server, scheme string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for s.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("admin server did not bind")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return scheme + "://" + s.Addr().String()
}

func get(t *testing.T, c *http.Client, url string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestHealthAndReadiness(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(Options{HTTP: config.HTTP{Listen: "127.0.0.1:0"}, Gatherer: reg})
	base := start(t, s, "http")
	c := http.DefaultClient
	if code, _, err := get(t, c, base+"/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz = %d %v, want 200", code, err)
	}
	if code, _, _ := get(t, c, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	s.SetReady(true)
	if code, body, _ := get(t, c, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	if code, _, _ := get(t, c, base+"/metrics"); code != 200 {
		t.Errorf("/metrics = %d", code)
	}
}

// TestMutualTLS: with client_ca set, a client without a certificate from
// that CA is refused and one with it gets through.
func TestMutualTLS(t *testing.T) {
	ca := certtest.New(t)
	caFile, certFile, keyFile := ca.ServerFiles(t, "127.0.0.1")
	s := New(Options{HTTP: config.HTTP{Listen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile, ClientCA: caFile},
		Gatherer: prometheus.NewRegistry()})
	base := start(t, s, "https")
	good := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS(t, "operator")}}
	if code, _, err := get(t, good, base+"/healthz"); err != nil || code != 200 {
		t.Errorf("with a client certificate: %d %v, want 200", code, err)
	}
	noCert := ca.ClientTLS(t, "operator")
	noCert.Certificates, noCert.GetClientCertificate = nil, nil
	bad := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}
	if _, _, err := get(t, bad, base+"/healthz"); err == nil {
		t.Error("a client without a certificate was served")
	}
	other := certtest.New(t)
	foreign := other.ClientTLS(t, "intruder")
	foreign.RootCAs = ca.RootPool()
	if _, _, err := get(t, &http.Client{Transport: &http.Transport{TLSClientConfig: foreign}}, base+"/healthz"); err == nil {
		t.Error("a client with another CA's certificate was served")
	}
}

func TestBadTLSFilesFailRun(t *testing.T) {
	s := New(Options{HTTP: config.HTTP{Listen: "127.0.0.1:0", TLSCert: "/nonexistent.pem", TLSKey: "/nonexistent.key"},
		Gatherer: prometheus.NewRegistry()})
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("Run with missing TLS files succeeded")
	}
}
