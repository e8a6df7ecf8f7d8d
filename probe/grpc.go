package probe

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// probeGRPC calls grpc.health.v1.Health/Check for grpc_service over mutual
// TLS on a fresh connection: up when the answer is SERVING. The call is
// bounded by ctx (unlike blackbox_exporter's, whose gRPC probe drops it).
func probeGRPC(ctx context.Context, t Target, s *Spec) Result {
	r := begin()
	cfg, err := s.clientTLS(t, "h2")
	if err != nil {
		return r.fail(err)
	}
	trace := &grpcTrace{}
	cc, err := grpc.NewClient("passthrough:///"+t.HostPort(),
		grpc.WithContextDialer(trace.dial),
		grpc.WithTransportCredentials(tracedCreds{credentials.NewTLS(cfg.Config), cfg, trace}),
		grpc.WithNoProxy(), grpc.WithDisableRetry())
	if err != nil {
		return r.fail(during(stageGRPC, ReasonGRPCError, err))
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: s.Check.GRPCService})
	trace.fill(&r)
	if err != nil {
		return r.fail(trace.cause(err))
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return r.down(ReasonGRPCNotServing, "grpc "+resp.GetStatus().String())
	}
	return r.up()
}

// grpcTrace records what gRPC's own goroutines saw while connecting: the
// RPC's error carries only a status, which would hide why a connection failed.
type grpcTrace struct {
	mu    sync.Mutex
	conn  Result    // Phases.Connect, Phases.TLSHandshake, RTT and Chain of the connection
	ready time.Time // when the connection was ready for the RPC
	err   error     // the first connect, handshake or read error
}

// dial is the gRPC dialer: a TCP connect, timed.
func (g *grpcTrace) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.record(during(stageConnect, ReasonError, err))
		return nil, err
	}
	g.conn.Phases.Connect = time.Since(start)
	g.conn.RTT = g.conn.Phases.Connect
	return conn, nil
}

// record keeps err if it is the first error seen. The caller holds mu.
func (g *grpcTrace) record(err error) {
	if g.err == nil {
		g.err = err
	}
}

// rtt returns the connect time recorded by dial.
func (g *grpcTrace) rtt() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conn.RTT
}

// fill copies the recorded timings and chain into r.
func (g *grpcTrace) fill(r *Result) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r.RTT, r.Phases, r.Chain, r.CertExpiry = g.conn.RTT, g.conn.Phases, g.conn.Chain, g.conn.CertExpiry
	if !g.ready.IsZero() {
		r.Phases.FirstByte = time.Since(g.ready)
	}
}

// cause returns the error to classify for a failed RPC: the connection's
// own failure when there was one, else the RPC's status.
func (g *grpcTrace) cause(rpcErr error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	st := status.Convert(rpcErr)
	if st.Code() == codes.DeadlineExceeded {
		return during(stageGRPC, ReasonTimeout, context.DeadlineExceeded)
	}
	return during(stageGRPC, ReasonGRPCError, errors.New("grpc "+st.Code().String()+": "+st.Message()))
}

// tracedCreds are gRPC transport credentials that run the handshake with
// the probe's own helpers, timing it and keeping the server's chain and the
// exact error. The embedded credentials answer Info (which names the server
// for the :authority header), Clone and the server side.
type tracedCreds struct {
	credentials.TransportCredentials
	cfg   *clientConfig
	trace *grpcTrace
}

// ClientHandshake completes the TLS handshake and, with TLS 1.3, waits for
// the server's first bytes: its SETTINGS frame if it accepted our
// certificate, an alert if not. gRPC writes as soon as this returns and
// closes the connection on a write error, which could lose the alert.
func (c tracedCreds) ClientHandshake(ctx context.Context, _ string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var r Result
	tc, err := handshake(ctx, raw, c.cfg, &r)
	var first []byte
	if err == nil {
		first, err = awaitVerdict(tc, c.cfg, c.trace.rtt(), time.Time{})
	}
	g := c.trace
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conn.Phases.TLSHandshake, g.conn.Chain, g.conn.CertExpiry = r.Phases.TLSHandshake, r.Chain, r.CertExpiry
	if err != nil {
		g.record(err)
		raw.Close()
		return nil, nil, err
	}
	g.ready = time.Now()
	info := credentials.TLSInfo{State: tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	return &tracedConn{Conn: &replayConn{Conn: tc, pending: first}, trace: g}, info, nil
}

// Clone keeps the wrapper around a clone of the wrapped credentials.
func (c tracedCreds) Clone() credentials.TransportCredentials {
	return tracedCreds{c.TransportCredentials.Clone(), c.cfg, c.trace}
}

// tracedConn is the TLS connection gRPC reads and writes. It records the
// first read error, which gRPC would otherwise report only as Unavailable.
type tracedConn struct {
	net.Conn
	trace *grpcTrace
}

// Read reads the connection, recording the first error.
func (c *tracedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.trace.mu.Lock()
		c.trace.record(during(stageGRPC, ReasonGRPCError, err))
		c.trace.mu.Unlock()
	}
	return n, err
}
