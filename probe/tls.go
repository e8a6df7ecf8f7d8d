package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// verdictMargin is added to two connect times when waiting for a TLS 1.3
// server's verdict on our certificate (see the comment in classify.go).
const verdictMargin = 25 * time.Millisecond

// probeTLS connects and completes a TLS handshake presenting the client
// certificate and verifying the server's chain and name.
func probeTLS(ctx context.Context, t Target, s *Spec) Result {
	r := begin()
	conn, err := connect(ctx, "tcp", t, &r)
	if err != nil {
		return r.fail(err)
	}
	defer conn.Close()
	cfg, err := s.clientTLS(t)
	if err != nil {
		return r.fail(err)
	}
	tc, err := handshake(ctx, conn, cfg, &r)
	if err == nil {
		deadline, _ := ctx.Deadline()
		_, err = awaitVerdict(tc, cfg, r.RTT, deadline)
	}
	if err != nil {
		return r.fail(err)
	}
	tc.Close()
	return r.up()
}

// clientConfig is one probe's TLS configuration; asked records whether the
// server requested a client certificate.
type clientConfig struct {
	*tls.Config
	asked atomic.Bool
}

// clientTLS builds the TLS configuration for one probe of t: the current
// CA pool and client certificate, the server name (server_name, default the
// address), and the given ALPN protocols.
func (s *Spec) clientTLS(t Target, alpn ...string) (*clientConfig, error) {
	pool, cert, err := s.id.current()
	if err != nil {
		return nil, fmt.Errorf("client identity: %w", err)
	}
	cfg := &clientConfig{}
	cfg.Config = &tls.Config{
		ServerName:         or(s.Check.ServerName, t.Address.String()),
		RootCAs:            pool,
		InsecureSkipVerify: s.Check.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         alpn,
		// Always present our certificate, even when the server's list of
		// acceptable CAs does not name its issuer: let the server decide.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cfg.asked.Store(true)
			return cert, nil
		},
	}
	return cfg, nil
}

// handshake runs the client handshake on conn, recording its duration and
// the server's chain (also when verification failed).
func handshake(ctx context.Context, conn net.Conn, cfg *clientConfig, r *Result) (*tls.Conn, error) {
	tc := tls.Client(conn, cfg.Config)
	start := time.Now()
	err := tc.HandshakeContext(ctx)
	r.Phases.TLSHandshake = time.Since(start)
	if err != nil {
		if ve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
			r.setChain(ve.UnverifiedCertificates)
		}
		return nil, during(stageHandshake, ReasonTLSHandshake, markRejection(err, cfg.asked.Load()))
	}
	r.setChain(tc.ConnectionState().PeerCertificates)
	return tc, nil
}

// awaitVerdict gives a TLS 1.3 server that asked for our certificate time
// to reject it (see classify.go): it reads for at most two connect times
// plus a margin, and never past restore. A timeout, the end of the stream or
// data from the server mean accepted; an alert means rejected. It returns
// the bytes it read, for a caller whose server speaks first, and leaves the
// read deadline at restore (zero: none).
func awaitVerdict(tc *tls.Conn, cfg *clientConfig, rtt time.Duration, restore time.Time) ([]byte, error) {
	if tc.ConnectionState().Version < tls.VersionTLS13 || !cfg.asked.Load() {
		return nil, nil
	}
	deadline := time.Now().Add(2*rtt + verdictMargin)
	if !restore.IsZero() && restore.Before(deadline) {
		deadline = restore
	}
	tc.SetReadDeadline(deadline)
	defer tc.SetReadDeadline(restore)
	var b [1]byte
	n, err := tc.Read(b[:])
	var ne net.Error
	if err == nil || errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout() {
		return b[:n], nil
	}
	return nil, during(stageHandshake, ReasonTLSHandshake, err)
}

// replayConn is a TLS connection whose reads first return bytes that
// awaitVerdict already read from it.
type replayConn struct {
	*tls.Conn
	pending []byte
}

// Read returns pending bytes first, then reads the connection.
func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
