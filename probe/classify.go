// Error classification: every failure becomes one Reason from a closed set,
// decided here, at the edge, with errors.Is and errors.As rather than by
// parsing messages. (The one exception is a received TLS alert, whose type
// crypto/tls does not export: its text is compared with tls.AlertError's.)
//
// Who rejected whom matters. When WE reject the server's certificate, the
// handshake fails locally with an x509 error (unknown authority, name
// mismatch, expired). When the SERVER rejects OUR client certificate it
// sends a TLS alert (bad_certificate, certificate_required, unknown_ca,
// certificate_expired, ...), which reaches us as a net.OpError with Op
// "remote error"; that is tls_bad_certificate. TLS 1.2 servers answer a
// missing certificate with the vaguer handshake_failure, which counts as a
// rejection only if the server had asked for our certificate (markRejection).
//
// The TLS 1.3 subtlety. In TLS 1.2 the server verifies the client
// certificate inside the handshake, so a rejection fails Handshake itself.
// In TLS 1.3 the client's certificate and Finished are its last handshake
// flight: the client considers the handshake complete as soon as it has sent
// them, so Handshake returns nil and the server's verdict (an alert, or
// session tickets and data) arrives only with the first read afterwards.
// A probe that stopped at Handshake would call a rejected certificate up.
// Worse, a client that writes first may find the server already gone: the
// write fails with a reset, the client closes, and the unread alert is lost.
//
// So, when TLS 1.3 was used and the server asked for a certificate,
// awaitVerdict (tls.go) reads once before anything is written:
//   - tls and postgres: the server sends nothing first, so the read has a
//     short deadline (two connect times plus a margin); a timeout means
//     accepted, an alert rejected. This costs that wait on every probe.
//   - https over h2 and grpc: the server sends its SETTINGS frame as soon as
//     it has accepted us, so the read returns in one round trip, and the
//     byte read is replayed to the HTTP/2 client (replayConn).
//   - https over HTTP/1.1: no wait; net/http reads before it writes the
//     single request, and alertOr recovers the alert that tls.Conn keeps if
//     the transport reports the failure without its cause.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Stages of a probe, named in Detail and in wrapped errors.
const (
	stageConnect   = "connect"
	stageHandshake = "tls handshake"
	stageHTTP      = "http request"
	stageGRPC      = "grpc health check"
	stageSSL       = "postgres ssl request"
	stageQuery     = "dns query"
)

// stageError wraps an error with the probe step it happened in and the
// Reason to use when nothing more specific is recognised.
type stageError struct {
	stage    string
	fallback Reason
	err      error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

// during wraps err as having happened in stage.
func during(stage string, fallback Reason, err error) error {
	return &stageError{stage: stage, fallback: fallback, err: err}
}

// classify maps an error to its Reason and plain-words detail.
func classify(err error) (Reason, string) {
	stage, fallback := "", ReasonError
	if se, ok := errors.AsType[*stageError](err); ok {
		stage, fallback = se.stage, se.fallback
	}
	if reason, detail, ok := classifyTLS(err); ok {
		return reason, detail
	}
	if reason, what, ok := classifyNet(err); ok {
		if stage != "" {
			what = stage + ": " + what
		}
		return reason, what
	}
	return fallback, err.Error()
}

// classifyNet recognises transport failures: timeouts, refusals, unreachable
// networks, resets and name resolution.
func classifyNet(err error) (Reason, string, bool) {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout, "timed out", true
	case errors.Is(err, context.Canceled):
		return ReasonError, "canceled", true
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused, "connection refused", true
	case errors.Is(err, syscall.ENETUNREACH):
		return ReasonUnreachable, "network unreachable", true
	case errors.Is(err, syscall.EHOSTUNREACH):
		return ReasonUnreachable, "host unreachable", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonReset, "connection reset by peer", true
	}
	if de, ok := errors.AsType[*net.DNSError](err); ok {
		return ReasonDNS, fmt.Sprintf("cannot resolve %q: %s", de.Name, de.Err), true
	}
	return "", "", false
}

// classifyTLS recognises the server rejecting our certificate and our
// rejecting the server's.
func classifyTLS(err error) (Reason, string, bool) {
	if rejectedByServer(err) {
		return ReasonTLSBadCertificate, "tls: server rejected our client certificate", true
	}
	if e, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return ReasonTLSUnknownAuthority, "tls: server certificate signed by an unknown authority" + issuedBy(e.Cert), true
	}
	if e, ok := errors.AsType[x509.HostnameError](err); ok {
		return ReasonTLSNameMismatch, fmt.Sprintf("tls: server certificate is not valid for %q", e.Host), true
	}
	if e, ok := errors.AsType[x509.CertificateInvalidError](err); ok && e.Reason == x509.Expired {
		return ReasonTLSExpired, expiredDetail(e.Cert), true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if se, ok := errors.AsType[*stageError](err); ok && se.stage == stageHandshake {
			return ReasonTLSHandshake, "tls handshake: server closed the connection", true
		}
	}
	return "", "", false
}

// clientCertAlerts are the alerts a server sends when it refuses the
// client's certificate (RFC 8446 §6.2).
var clientCertAlerts = map[string]bool{}

// handshakeFailure is the alert text of handshake_failure (40).
var handshakeFailure = tls.AlertError(40).Error()

func init() {
	for _, a := range []tls.AlertError{42, 43, 44, 45, 46, 48, 49, 116} {
		// bad_certificate, unsupported_certificate, certificate_revoked,
		// certificate_expired, certificate_unknown, unknown_ca,
		// access_denied, certificate_required
		clientCertAlerts[a.Error()] = true
	}
}

// rejectedByServer reports whether err says the server refused our
// certificate: one of clientCertAlerts, or a handshake_failure marked by
// markRejection.
func rejectedByServer(err error) bool {
	if _, ok := errors.AsType[*certRejected](err); ok {
		return true
	}
	return clientCertAlerts[remoteAlert(err)]
}

// remoteAlert returns the text of the TLS alert the peer sent, or "".
// crypto/tls delivers a received alert as a net.OpError{Op: "remote error"}
// around an unexported alert type whose text equals tls.AlertError's. (A bare
// tls.AlertError is an alert we sent, so it is not looked at here.)
func remoteAlert(err error) string {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" && op.Err != nil {
		return op.Err.Error()
	}
	return ""
}

// certRejected marks a handshake_failure alert that arrived after the
// server asked for our certificate. TLS 1.2 servers send that alert when a
// required client certificate is missing (RFC 5246 §7.4.6; Go and OpenSSL
// do); by then the version and cipher are settled, so it is about our
// certificate, not the negotiation.
type certRejected struct{ err error }

func (e *certRejected) Error() string { return e.err.Error() }
func (e *certRejected) Unwrap() error { return e.err }

// markRejection wraps a handshake error in certRejected when it is a
// handshake_failure alert and the server had asked for our certificate.
func markRejection(err error, asked bool) error {
	if asked && remoteAlert(err) == handshakeFailure {
		return &certRejected{err}
	}
	return err
}

func issuedBy(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf(" (issuer %q)", c.Issuer.CommonName)
}

func expiredDetail(c *x509.Certificate) string {
	if c == nil {
		return "tls: server certificate has expired or is not yet valid"
	}
	if time.Now().Before(c.NotBefore) {
		return fmt.Sprintf("tls: server certificate %q is not valid before %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("tls: server certificate %q expired at %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
}
