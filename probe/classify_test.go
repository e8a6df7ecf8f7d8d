package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"
)

// syscallErr is the error net.Dial returns for errno during connect.
func syscallErr(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
}

// remoteAlertErr builds the error crypto/tls returns for a received alert.
func remoteAlertErr(code uint8) error {
	return &net.OpError{Op: "remote error", Err: tls.AlertError(code)}
}

func TestClassify(t *testing.T) {
	issuer := &x509.Certificate{Issuer: pkix.Name{CommonName: "other CA"}}
	for _, tc := range []struct {
		name   string
		err    error
		reason Reason
		detail string
	}{
		{"refused", during(stageConnect, ReasonError, syscallErr(syscall.ECONNREFUSED)), ReasonRefused, "connect: connection refused"},
		{"net unreachable", during(stageConnect, ReasonError, syscallErr(syscall.ENETUNREACH)), ReasonUnreachable, "connect: network unreachable"},
		{"host unreachable", during(stageConnect, ReasonError, syscallErr(syscall.EHOSTUNREACH)), ReasonUnreachable, "connect: host unreachable"},
		{"reset", during(stageHTTP, ReasonHTTPError, syscallErr(syscall.ECONNRESET)), ReasonReset, "http request: connection reset by peer"},
		{"deadline", during(stageHTTP, ReasonHTTPError, fmt.Errorf("get: %w", context.DeadlineExceeded)), ReasonTimeout, "http request: timed out"},
		{"io deadline", during(stageHandshake, ReasonTLSHandshake, os.ErrDeadlineExceeded), ReasonTimeout, "tls handshake: timed out"},
		{"canceled", context.Canceled, ReasonError, "canceled"},
		{"name resolution", &net.DNSError{Name: "db.internal", Err: "no such host"}, ReasonDNS, `cannot resolve "db.internal": no such host`},
		{"bad certificate alert", during(stageHandshake, ReasonTLSHandshake, remoteAlertErr(42)), ReasonTLSBadCertificate, "tls: server rejected our client certificate"},
		{"certificate required alert", during(stageHTTP, ReasonHTTPError, remoteAlertErr(116)), ReasonTLSBadCertificate, "tls: server rejected our client certificate"},
		{"unknown ca alert", remoteAlertErr(48), ReasonTLSBadCertificate, "tls: server rejected our client certificate"},
		{"handshake failure alert", during(stageHandshake, ReasonTLSHandshake, remoteAlertErr(40)), ReasonTLSHandshake, "tls handshake: remote error: tls: handshake failure"},
		{"handshake failure after cert request", markRejection(remoteAlertErr(40), true), ReasonTLSBadCertificate, "tls: server rejected our client certificate"},
		{"handshake failure, no cert request", markRejection(remoteAlertErr(40), false), ReasonError, "remote error: tls: handshake failure"},
		{"our own alert is not the server's", during(stageHandshake, ReasonTLSHandshake, tls.AlertError(42)), ReasonTLSHandshake, "tls handshake: tls: bad certificate"},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{Cert: issuer}}, ReasonTLSUnknownAuthority, `tls: server certificate signed by an unknown authority (issuer "other CA")`},
		{"name mismatch", x509.HostnameError{Host: "10.0.0.1", Certificate: issuer}, ReasonTLSNameMismatch, `tls: server certificate is not valid for "10.0.0.1"`},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, ReasonTLSExpired, "tls: server certificate has expired or is not yet valid"},
		{"other invalid", during(stageHandshake, ReasonTLSHandshake, x509.CertificateInvalidError{Reason: x509.IncompatibleUsage}), ReasonTLSHandshake, "tls handshake: x509: certificate specifies an incompatible key usage"},
		{"closed in handshake", during(stageHandshake, ReasonTLSHandshake, io.EOF), ReasonTLSHandshake, "tls handshake: server closed the connection"},
		{"stage fallback", during(stageGRPC, ReasonGRPCError, errors.New("boom")), ReasonGRPCError, "grpc health check: boom"},
		{"other", errors.New("boom"), ReasonError, "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, detail := classify(tc.err)
			if reason != tc.reason || detail != tc.detail {
				t.Errorf("classify = %q, %q; want %q, %q", reason, detail, tc.reason, tc.detail)
			}
			if !slices.Contains(Reasons(), reason) {
				t.Errorf("reason %q is not in Reasons()", reason)
			}
		})
	}
}

func TestReasonsClosedSet(t *testing.T) {
	rs := Reasons()
	seen := map[Reason]bool{}
	for _, r := range rs {
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
	}
	if len(rs) != 21 || rs[0] != ReasonOK {
		t.Errorf("Reasons() = %q: want 21 reasons, ReasonOK first", rs)
	}
}

func TestTarget(t *testing.T) {
	v4 := Target{Check: "api", Address: netip.MustParseAddr("203.0.113.10"), Port: 443}
	v6 := Target{Check: "api", Address: netip.MustParseAddr("2001:db8::1"), Port: 443}
	if v4.String() != "api/203.0.113.10:443" || v6.String() != "api/[2001:db8::1]:443" {
		t.Errorf("String: %q, %q", v4, v6)
	}
	seen := map[Target]int{v4: 1}
	seen[Target{Check: "api", Address: netip.MustParseAddr("203.0.113.10"), Port: 443}]++
	if len(seen) != 1 || seen[v4] != 2 {
		t.Errorf("equal targets are not one map key: %v", seen)
	}
}
