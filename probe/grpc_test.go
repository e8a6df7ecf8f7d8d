package probe

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"meridian/config"
	"meridian/internal/certtest"
)

// startGRPC serves grpc.health.v1 over mutual TLS on loopback.
func startGRPC(t *testing.T, ca *certtest.CA) (*health.Server, Target) {
	t.Helper()
	l := listen(t)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLS(t))))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return hs, targetOf(t, l.Addr())
}

func TestGRPC(t *testing.T) {
	ca := certtest.New(t)
	hs, tg := startGRPC(t, ca)
	check := config.Check{Type: "grpc", GRPCService: "api"}
	s := newSpec(t, check, clientFiles(t, ca, ca, "probe"))

	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	r := run(s, tg)
	wantReason(t, r, ReasonOK)
	checkTimings(t, r)
	checkChain(t, r)

	hs.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
	r = run(s, tg)
	wantReason(t, r, ReasonGRPCNotServing)
	if r.Detail != "grpc NOT_SERVING" {
		t.Errorf("detail %q", r.Detail)
	}

	r = run(newSpec(t, config.Check{Type: "grpc", GRPCService: "nope"}, clientFiles(t, ca, ca, "probe")), tg)
	wantReason(t, r, ReasonGRPCError)
	if r.Detail != "grpc health check: grpc NotFound: unknown service" {
		t.Errorf("detail %q", r.Detail)
	}
}

func TestGRPCRejections(t *testing.T) {
	ca := certtest.New(t)
	_, tg := startGRPC(t, ca)
	for _, tc := range []struct {
		name   string
		files  config.TLSFiles
		reason Reason
	}{
		{"client cert from another CA", clientFiles(t, certtest.New(t), ca, "probe"), ReasonTLSBadCertificate},
		{"no client cert", trustOnly(t, ca), ReasonTLSBadCertificate},
		{"server from another CA", clientFiles(t, ca, certtest.New(t), "probe"), ReasonTLSUnknownAuthority},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantReason(t, run(newSpec(t, config.Check{Type: "grpc"}, tc.files), tg), tc.reason)
		})
	}
	wantReason(t, run(newSpec(t, config.Check{Type: "grpc"}, clientFiles(t, ca, ca, "probe")), targetOf(t, closedPort(t))), ReasonRefused)
}

// TestGRPCHonoursDeadline: a server that never completes the handshake
// must not hold the probe past its timeout.
func TestGRPCHonoursDeadline(t *testing.T) {
	ca := certtest.New(t)
	const timeout = 300 * time.Millisecond
	c := config.Check{Type: "grpc"}
	c.Timeout.Duration = timeout
	s := newSpec(t, c, clientFiles(t, ca, ca, "probe"))

	start := time.Now()
	r := run(s, targetOf(t, hangingListener(t).Addr()))
	wantReason(t, r, ReasonTimeout)
	if elapsed := time.Since(start); elapsed > timeout+250*time.Millisecond {
		t.Errorf("probe took %v, want about the %v timeout", elapsed, timeout)
	}
}
