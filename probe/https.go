package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// maxBody bounds how much of a response body is read for expect_body.
const maxBody = 1 << 20

// probeHTTPS connects, completes the TLS handshake (offering h2 and
// http/1.1 by ALPN) and sends GET path: up when the status is one of
// expect_status and the body matches expect_body. Redirects are not
// followed: a 301 is a status like any other.
func probeHTTPS(ctx context.Context, t Target, s *Spec) Result {
	r := begin()
	conn, err := connect(ctx, "tcp", t, &r)
	if err != nil {
		return r.fail(err)
	}
	defer conn.Close()
	cfg, err := s.clientTLS(t, "h2", "http/1.1")
	if err != nil {
		return r.fail(err)
	}
	tc, err := handshake(ctx, conn, cfg, &r)
	if err != nil {
		return r.fail(err)
	}
	rt, err := roundTripper(ctx, tc, cfg, r.RTT)
	if err != nil {
		return r.fail(err)
	}
	defer rt.CloseIdleConnections()
	status, body, err := s.get(ctx, rt, t, &r)
	if err != nil {
		return r.fail(during(stageHTTP, ReasonHTTPError, alertOr(tc, err)))
	}
	cfg.accepted() // an answer: the server took our certificate
	return s.judge(&r, status, body)
}

// closingRoundTripper is an http.RoundTripper that can release its connection.
type closingRoundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

// roundTripper returns a round tripper that sends one request over tc in
// the protocol ALPN chose. For h2, with TLS 1.3, it first waits for the
// server's verdict on our certificate (its SETTINGS frame, or an alert): an
// HTTP/2 client writes several times before it reads, and a write after the
// server's reset makes it close the connection with the alert unread.
//
// The h2 connection goes through an http2.Transport's pool rather than
// http2.Transport.NewClientConn: a ClientConn that was never taken from a
// pool counts as unused, and x/net keeps an unused connection's memory
// (about 20 kB) for 5 s after it closes, in case its pool wants it back;
// at 1,000 probes a second that is 100 MB of heap.
func roundTripper(ctx context.Context, tc *tls.Conn, cfg *clientConfig, rtt time.Duration) (closingRoundTripper, error) {
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		return oneConnTransport(tc), nil
	}
	deadline, _ := ctx.Deadline()
	first, err := awaitVerdict(tc, cfg, rtt, deadline)
	if err != nil {
		return nil, err
	}
	var used atomic.Bool
	return &http2.Transport{
		DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
			if used.Swap(true) { // the transport retries only a request the server did not take
				return nil, errH2Refused
			}
			return &replayConn{Conn: tc, pending: first}, nil
		},
	}, nil
}

// errH2Refused is the error of an h2 request that the server would not
// take on the probe's connection: http2.Transport retries such a request on
// a new connection, which a probe does not open.
var errH2Refused = errors.New("the server did not take the request (GOAWAY, refused stream or closed connection)")

// oneConnTransport returns an HTTP/1.1 transport that sends its request
// over conn, an established TLS connection.
func oneConnTransport(conn net.Conn) *http.Transport {
	var used atomic.Bool
	return &http.Transport{
		DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
			if used.Swap(true) {
				return nil, errors.New("probe connection already used")
			}
			return conn, nil
		},
		DisableKeepAlives: true,
	}
}

// alertOr returns the TLS alert the server sent on tc, or else err. With
// TLS 1.3 a rejected client certificate surfaces only as an alert on the
// first read after the handshake, and HTTP clients may report that read's
// failure without its cause; tls.Conn keeps the alert, so one non-blocking
// read returns it.
func alertOr(tc *tls.Conn, err error) error {
	tc.SetReadDeadline(time.Now())
	var b [1]byte
	if _, rerr := tc.Read(b[:]); remoteAlert(rerr) != "" {
		return rerr
	}
	return err
}

// get sends the check's request and reads at most maxBody of the answer,
// recording the time to the first response byte.
func (s *Spec) get(ctx context.Context, tr http.RoundTripper, t Target, r *Result) (int, []byte, error) {
	var firstByte atomic.Int64 // a time.Duration; set on the transport's goroutine
	start := time.Now()
	trace := &httptrace.ClientTrace{
		GotFirstResponseByte: func() { firstByte.Store(int64(time.Since(start))) },
	}
	req, err := s.request(httptrace.WithClientTrace(ctx, trace), t)
	if err != nil {
		return 0, nil, err
	}
	resp, err := tr.RoundTrip(req)
	r.Phases.FirstByte = time.Duration(firstByte.Load())
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if s.body == nil {
		return resp.StatusCode, nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, body, err
}

// request builds GET https://host/path with the check's Host and headers.
// The Host defaults to server_name, then to the address.
func (s *Spec) request(ctx context.Context, t Target) (*http.Request, error) {
	host := or(s.Check.Host, or(s.Check.ServerName, t.HostPort()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+or(s.Check.Path, "/"), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range s.Check.Headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	return req, nil
}

// judge finishes r from the response's status and body.
func (s *Spec) judge(r *Result, status int, body []byte) Result {
	want := s.Check.ExpectStatus
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	if !slices.Contains(want, status) {
		return r.down(ReasonHTTPStatus, "http status "+strconv.Itoa(status))
	}
	if s.body != nil && !s.body.Match(body) {
		return r.down(ReasonHTTPBody, "http body does not match "+strconv.Quote(s.body.String()))
	}
	return r.up()
}
