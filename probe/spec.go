package probe

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/miekg/dns"

	"meridian/config"
)

// Spec is one configured check, prepared once for every probe that runs it:
// the body regexp compiled, the DNS query parsed and the client identity
// loaded. For TLS check types it also keeps each target's TLS session, which
// probes resume between full handshakes (see "Session resumption" in
// tls.go). It is safe for concurrent use.
type Spec struct {
	// Name is the check's name in [checks].
	Name string
	// Check is the check as configured. Zero values of path, expect_status and
	// the DNS fields mean the defaults config.Load would have filled in.
	Check config.Check

	probe    ProbeFunc
	body     *regexp.Regexp // nil: any body
	query    dnsQuery
	id       *identity     // nil for check types without TLS
	sessions *sessionCache // nil: no TLS session resumption (see tls.go)
}

// dnsQuery is a dns check's question and expected answer code.
type dnsQuery struct {
	name  string
	qtype uint16
	rcode int
	net   string // "udp" or "tcp"
}

// tlsTypes are the check types that speak TLS and so need a client identity.
var tlsTypes = map[string]bool{"tls": true, "https": true, "grpc": true, "postgres": true}

// NewSpec prepares check name for probing. defaults is the [tls] client
// identity; the check's own ca, cert and key override it (cert and key as a
// pair). It fails when the type is unknown, the body regexp or DNS fields are
// invalid, or the identity files cannot be read.
func NewSpec(name string, c config.Check, defaults config.TLSFiles) (*Spec, error) {
	s := &Spec{Name: name, Check: c, probe: Probers[c.Type]}
	if s.probe == nil {
		return nil, fmt.Errorf("check %s: unknown type %q", name, c.Type)
	}
	if c.ExpectBody != "" {
		re, err := regexp.Compile(c.ExpectBody)
		if err != nil {
			return nil, fmt.Errorf("check %s: expect_body: %w", name, err)
		}
		s.body = re
	}
	if c.Type == "dns" {
		q, err := parseQuery(c)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", name, err)
		}
		s.query = q
	}
	if tlsTypes[c.Type] {
		id, err := loadIdentity(mergeFiles(c.TLSFiles, defaults))
		if err != nil {
			return nil, fmt.Errorf("check %s: client identity: %w", name, err)
		}
		s.id = id
		s.sessions = newSessionCache(fullHandshakeEvery)
	}
	return s, nil
}

// Run probes t with the check's function, bounded by the check's timeout.
func (s *Spec) Run(ctx context.Context, t Target) Result {
	if d := s.Check.Timeout.Duration; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return s.probe(ctx, t, s)
}

// mergeFiles lays a check's TLS files over the [tls] defaults: the CA alone,
// the certificate and key together.
func mergeFiles(check, defaults config.TLSFiles) config.TLSFiles {
	out := defaults
	if check.CA != "" {
		out.CA = check.CA
	}
	if check.Cert != "" || check.Key != "" {
		out.Cert, out.Key = check.Cert, check.Key
	}
	return out
}

// parseQuery reads a dns check's question, filling config's defaults.
func parseQuery(c config.Check) (dnsQuery, error) {
	q := dnsQuery{name: or(c.QueryName, "."), net: or(c.Protocol, "udp")}
	var ok bool
	if q.qtype, ok = dns.StringToType[strings.ToUpper(or(c.QueryType, "SOA"))]; !ok {
		return q, fmt.Errorf("query_type %q is not a DNS type", c.QueryType)
	}
	if q.rcode, ok = dns.StringToRcode[strings.ToUpper(or(c.ExpectRcode, "NOERROR"))]; !ok {
		return q, fmt.Errorf("expect_rcode %q is not a DNS rcode", c.ExpectRcode)
	}
	if q.net != "udp" && q.net != "tcp" {
		return q, fmt.Errorf("protocol %q is not udp or tcp", q.net)
	}
	if _, ok := dns.IsDomainName(q.name); !ok {
		return q, fmt.Errorf("query_name %q is not a domain name", q.name)
	}
	q.name = dns.Fqdn(q.name)
	return q, nil
}

// or returns s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
