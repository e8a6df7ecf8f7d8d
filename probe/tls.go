package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
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
// server requested a client certificate, and resume (nil: no resumption) is
// the probe's use of its target's session (see "Session resumption" below).
type clientConfig struct {
	*tls.Config
	asked  atomic.Bool
	resume *sessionUse
}

// clientTLS builds the TLS configuration for one probe of t: the current
// CA pool and client certificate, the server name (server_name, default the
// address), the given ALPN protocols and, when the Spec resumes sessions,
// t's session cache.
func (s *Spec) clientTLS(t Target, alpn ...string) (*clientConfig, error) {
	pool, cert, err := s.id.current()
	if err != nil {
		return nil, fmt.Errorf("client identity: %w", err)
	}
	cfg := &clientConfig{resume: s.sessions.use(t, pool, cert)}
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
	if cfg.resume != nil { // never a typed nil in the interface
		cfg.ClientSessionCache = cfg.resume
	}
	return cfg, nil
}

// accepted records that the server accepted this probe's handshake (and so
// our certificate). After a full handshake, that renews the target's
// permission to resume; after a resumed one it changes nothing.
func (c *clientConfig) accepted() {
	if c.resume != nil && c.resume.full {
		c.resume.s.verified(c.resume.pool, c.resume.cert)
	}
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
	state := tc.ConnectionState()
	r.setChain(state.PeerCertificates) // a resumed session's: from its full handshake
	if cfg.resume != nil {
		cfg.resume.full = !state.DidResume
	}
	if state.Version < tls.VersionTLS13 || !cfg.asked.Load() {
		cfg.accepted() // the server's verdict came within the handshake
	}
	return tc, nil
}

// awaitVerdict gives a TLS 1.3 server that asked for our certificate time
// to reject it (see classify.go): it reads for at most two connect times
// plus a margin, and never past restore. A timeout, the end of the stream or
// data from the server mean accepted (recorded with cfg.accepted); an alert
// means rejected. It returns the bytes it read, for a caller whose server
// speaks first, and leaves the read deadline at restore (zero: none).
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
		cfg.accepted()
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

// Session resumption.
//
// A full handshake costs the prober a signature with its key and the
// verification of the server's chain and signature, and costs the server
// the same in reverse; a resumed handshake (TLS 1.3 PSK with a fresh key
// exchange, or a TLS 1.2 ticket) skips all of it. But a resumed handshake
// proves less: the server sees no client certificate (it trusts the one in
// its ticket) and we see no server certificate (we trust the one in our
// session). Go re-checks the cached chains against the current CA pools and
// clock on both sides, but nothing else does: a server that starts refusing
// our certificate by a deny list (tls.Config.VerifyPeerCertificate is not
// called on resumption, nor is its equivalent in most servers), or that
// swaps its own certificate, would look healthy for as long as its tickets
// live (7 days for Go). A probe that always resumed would stop proving the
// mutual-TLS path.
//
// So each target may resume only for fullHandshakeEvery after the last full
// handshake that the server accepted (for TLS 1.3: after the verdict read by
// awaitVerdict, or the HTTP/1.1 response); after that the session is not
// offered and the probe does a full handshake. A certificate problem thus
// shows within fullHandshakeEvery plus one interval, and from then on every
// probe does a full handshake until one is accepted again. A change of our
// client certificate or CA pool (a rotation) forces a full handshake at
// once. The chain a resumed probe reports is that of the session's full
// handshake, at most fullHandshakeEvery old.
//
// Sessions are kept per Target, not under crypto/tls's cache key (the
// server name), so that endpoints sharing a server_name never resume each
// other's sessions; they live in the Spec, so a reload starts afresh.

// fullHandshakeEvery bounds how long a target's TLS session is resumed after
// the last full handshake the server accepted.
const fullHandshakeEvery = 30 * time.Second

// sessionCache holds the TLS sessions of a Spec's targets. A nil
// sessionCache resumes nothing.
type sessionCache struct {
	every time.Duration

	mu sync.Mutex
	m  map[Target]*session
}

func newSessionCache(every time.Duration) *sessionCache {
	return &sessionCache{every: every, m: map[Target]*session{}}
}

// use returns one probe's view of t's session for a handshake presenting
// cert and trusting pool; nil when c is nil.
func (c *sessionCache) use(t Target, pool *x509.CertPool, cert *tls.Certificate) *sessionUse {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[t]
	if s == nil {
		s = &session{}
		c.m[t] = s
	}
	return &sessionUse{s: s, every: c.every, pool: pool, cert: cert}
}

// session is one target's resumable TLS session.
type session struct {
	mu    sync.Mutex
	state *tls.ClientSessionState // the latest ticket; nil: none
	ok    time.Time               // the last accepted full handshake; zero: none
	pool  *x509.CertPool          // the identity of that handshake
	cert  *tls.Certificate
}

// resumable returns the session if it may be resumed by a handshake with
// the given identity: one that a full handshake with that identity was
// accepted less than every ago.
func (s *session) resumable(pool *x509.CertPool, cert *tls.Certificate, every time.Duration) (*tls.ClientSessionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil || s.ok.IsZero() || time.Since(s.ok) >= every || pool != s.pool || cert != s.cert {
		return nil, false
	}
	return s.state, true
}

// put keeps the latest ticket (nil: forget it).
func (s *session) put(cs *tls.ClientSessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = cs
}

// verified records a full handshake with the given identity that the server accepted.
func (s *session) verified(pool *x509.CertPool, cert *tls.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok, s.pool, s.cert = time.Now(), pool, cert
}

// sessionUse is the tls.ClientSessionCache of one probe's handshake. It
// ignores crypto/tls's cache key: the session is already the target's.
// handshake sets full; accepted reads it.
type sessionUse struct {
	s     *session
	every time.Duration
	pool  *x509.CertPool
	cert  *tls.Certificate
	full  bool // this probe's handshake was a full one
}

// Get returns the target's session while it may be resumed.
func (u *sessionUse) Get(string) (*tls.ClientSessionState, bool) {
	return u.s.resumable(u.pool, u.cert, u.every)
}

// Put keeps a ticket the server sent (or forgets the session, for nil).
func (u *sessionUse) Put(_ string, cs *tls.ClientSessionState) { u.s.put(cs) }
