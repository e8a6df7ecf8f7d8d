// Package probe runs meridian's health checks: one function per check type
// (tcp, tls, https, grpc, postgres, dns), looked up by type name in Probers,
// the way blackbox_exporter's prober package does it.
//
// A check function connects to one Target, presents the node's client
// certificate where the protocol uses TLS, and returns a Result: up or down,
// a failure Reason from a closed set (usable as a metric label and in
// gossip), plain-words detail, the TCP connect time (the network latency
// figure the latency policy uses), phase timings and the server certificate
// chain with its earliest expiry.
//
// A Spec is built once per configured check by NewSpec; it is immutable
// apart from the client identity, which is re-read from disk when its files
// change, so certificates rotate without a restart. A Spec is safe for
// concurrent use by any number of probes.
package probe

import (
	"context"
	"crypto/x509"
	"net/netip"
	"time"
)

// Reason says why a probe failed. The set is closed: every value is one of
// the constants below, so it is safe as a metric label and on the wire.
type Reason string

// The failure reasons. ReasonOK (the empty string) means the probe succeeded.
const (
	ReasonOK                  Reason = ""
	ReasonTimeout             Reason = "timeout"
	ReasonRefused             Reason = "refused"
	ReasonUnreachable         Reason = "unreachable"
	ReasonDNS                 Reason = "dns" // resolving a name failed
	ReasonReset               Reason = "reset"
	ReasonTLSBadCertificate   Reason = "tls_bad_certificate" // the server rejected our client certificate
	ReasonTLSUnknownAuthority Reason = "tls_unknown_authority"
	ReasonTLSNameMismatch     Reason = "tls_name_mismatch"
	ReasonTLSExpired          Reason = "tls_expired"
	ReasonTLSHandshake        Reason = "tls_handshake"
	ReasonHTTPStatus          Reason = "http_status"
	ReasonHTTPBody            Reason = "http_body"
	ReasonHTTPError           Reason = "http_error"
	ReasonGRPCNotServing      Reason = "grpc_not_serving"
	ReasonGRPCError           Reason = "grpc_error"
	ReasonPostgresNoSSL       Reason = "postgres_no_ssl"
	ReasonPostgresError       Reason = "postgres_error"
	ReasonDNSRcode            Reason = "dns_rcode"
	ReasonDNSError            Reason = "dns_error"
	ReasonError               Reason = "error" // anything else
)

// Reasons returns every Reason, ReasonOK first, e.g. to initialise metric
// children up front. The caller may modify the returned slice.
func Reasons() []Reason {
	return []Reason{
		ReasonOK, ReasonTimeout, ReasonRefused, ReasonUnreachable, ReasonDNS, ReasonReset,
		ReasonTLSBadCertificate, ReasonTLSUnknownAuthority, ReasonTLSNameMismatch,
		ReasonTLSExpired, ReasonTLSHandshake, ReasonHTTPStatus, ReasonHTTPBody,
		ReasonHTTPError, ReasonGRPCNotServing, ReasonGRPCError, ReasonPostgresNoSSL,
		ReasonPostgresError, ReasonDNSRcode, ReasonDNSError, ReasonError,
	}
}

// Target is one (check, address, port) to probe. It is comparable and
// serves as a map key: the same check on the same address is probed once,
// however many services use it.
type Target struct {
	Check   string // the check's name in [checks]
	Address netip.Addr
	Port    int
}

// String returns "check/addr:port", e.g. "api/203.0.113.10:443" or
// "api/[2001:db8::1]:443".
func (t Target) String() string { return t.Check + "/" + t.HostPort() }

// HostPort returns the address and port in the form net.Dial takes.
func (t Target) HostPort() string {
	return netip.AddrPortFrom(t.Address, uint16(t.Port)).String()
}

// Phases holds how long each step of a probe took. A phase the check type
// does not have, or did not reach, is zero.
type Phases struct {
	Connect      time.Duration // TCP connect (for UDP DNS, the socket setup)
	TLSHandshake time.Duration
	FirstByte    time.Duration // from sending the request to the first byte of the answer
}

// CertInfo describes one certificate of the server's chain.
type CertInfo struct {
	Subject  string
	Issuer   string
	NotAfter time.Time
	DNSNames []string
}

// Result is the outcome of one probe.
type Result struct {
	OK     bool
	Reason Reason // ReasonOK when OK
	Detail string // plain words, e.g. "http status 503"; never secrets
	// RTT is the TCP connect time: the network latency figure. For a UDP DNS
	// check, which has no connect, it is the query's round trip.
	RTT    time.Duration
	Phases Phases
	// CertExpiry is the earliest NotAfter in the server's chain (zero when no
	// certificate was seen). It is set even when verification failed.
	CertExpiry time.Time
	Chain      []CertInfo
	Start      time.Time
	Duration   time.Duration
}

// ProbeFunc runs one check against one target. It returns when the probe
// is done or ctx ends, whichever is first; the caller sets ctx's deadline
// to the check's timeout (Spec.Run does).
type ProbeFunc func(ctx context.Context, t Target, s *Spec) Result

// Probers maps each check type name to its function.
var Probers = map[string]ProbeFunc{
	"tcp":      probeTCP,
	"tls":      probeTLS,
	"https":    probeHTTPS,
	"grpc":     probeGRPC,
	"postgres": probePostgres,
	"dns":      probeDNS,
}

// begin starts a Result's clock.
func begin() Result { return Result{Start: time.Now()} }

// up finishes r as a success.
func (r *Result) up() Result {
	r.OK, r.Reason, r.Detail = true, ReasonOK, ""
	r.Duration = time.Since(r.Start)
	return *r
}

// down finishes r as a failure with the given reason and detail.
func (r *Result) down(reason Reason, detail string) Result {
	r.OK, r.Reason, r.Detail = false, reason, detail
	r.Duration = time.Since(r.Start)
	return *r
}

// fail finishes r as a failure classified from err.
func (r *Result) fail(err error) Result {
	return r.down(classify(err))
}

// setChain records the server's certificates and their earliest expiry.
func (r *Result) setChain(certs []*x509.Certificate) {
	r.Chain = make([]CertInfo, 0, len(certs))
	r.CertExpiry = time.Time{}
	for _, c := range certs {
		r.Chain = append(r.Chain, CertInfo{
			Subject:  c.Subject.String(),
			Issuer:   c.Issuer.String(),
			NotAfter: c.NotAfter,
			DNSNames: c.DNSNames,
		})
		if r.CertExpiry.IsZero() || c.NotAfter.Before(r.CertExpiry) {
			r.CertExpiry = c.NotAfter
		}
	}
}
