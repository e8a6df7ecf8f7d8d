// Package delegation checks that a zone is delegated to servers that serve
// it, the way a careful operator would with dig: it finds the servers of
// the parent zone (walking down from the root, as `dig +trace` does, or at
// a given address), asks them for the zone's NS set without recursion and
// expects a referral with glue, then asks every listed name server, at
// every address, for the zone's SOA and NS. It reports each finding in
// plain words with a severity: NS sets that differ between the parent and
// the zone, missing or wrong glue, servers that do not answer, lame
// servers (REFUSED, SERVFAIL, no AA, a referral), SOA serials that differ,
// and NS TTLs that are very short or very long. `meridian delegation
// check` prints the report.
//
// It is the third importer of miekg/dns, after the resolver and the DNS
// probe: it speaks DNS as a client to servers that are mostly not ours.
// Every query has a bounded timeout and tries, falls back from UDP to TCP
// when the answer is truncated, and the whole check has a deadline and a
// bounded number of queries.
package delegation

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults for Options left zero.
const (
	DefaultPort         = 53
	DefaultQueryTimeout = 2 * time.Second
	DefaultTries        = 2
	DefaultTimeout      = 30 * time.Second
)

// NS TTLs outside these bounds get a warning.
const (
	ShortNSTTL = 300        // seconds: resolvers ask for the NS set again very often
	LongNSTTL  = 7 * 86_400 // seconds: a change of servers takes that long to be seen
)

// Options configures a check.
type Options struct {
	// Parent is one server of the parent zone to ask, as IP[:port] or
	// host[:port] (port 53 if absent), instead of walking from the root.
	Parent string
	// Roots are the servers (IP[:port], port 53 if absent) the walk starts
	// from; empty: the built-in root hints.
	Roots []string
	// Port is the port of every server found from NS records and glue
	// (0: DefaultPort). Resolvers always use 53; other ports are for labs.
	Port uint16
	// QueryTimeout bounds one try of one query (0: DefaultQueryTimeout).
	QueryTimeout time.Duration
	// Tries is how many times a query is sent over UDP before a server is
	// taken to be silent (0: DefaultTries).
	Tries int
	// Timeout bounds the whole check (0: DefaultTimeout).
	Timeout time.Duration
	// Expect, if set, is what the operator's configuration says; the
	// delegation is compared with it.
	Expect *Expect
	// LookupHost finds the addresses of a name server that has no glue
	// when the check does not walk from the root (nil: the system
	// resolver). It must obey ctx.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Expect is what the operator's configuration says about the zone.
type Expect struct {
	// Source names where it comes from, for messages ("config.toml").
	Source string
	// NS is the zone's name server set (zones.ns).
	NS []string
	// Addrs holds the addresses the zone's own records give each name
	// server (canonical name → addresses).
	Addrs map[string][]netip.Addr
	// Listen are the node's DNS listen addresses (dns.listen).
	Listen []netip.AddrPort
}

// Severity grades a finding: only errors make a check fail.
type Severity string

// Severities, mildest first.
const (
	OK      Severity = "ok"
	Warning Severity = "warning"
	Error   Severity = "error"
)

// Finding is one observation, in plain words.
type Finding struct {
	Severity Severity `json:"severity"`
	// Check is the aspect looked at: parent, glue, server, ns, soa, ttl
	// or config.
	Check   string `json:"check"`
	Message string `json:"message"`
}

// Report is the outcome of a check.
type Report struct {
	Zone string `json:"zone"`
	// Parent is the parent zone's name when the check walked from the
	// root, else empty.
	Parent        string              `json:"parent,omitempty"`
	ParentServers []string            `json:"parent_servers"` // addresses asked
	ParentNS      []string            `json:"parent_ns"`
	ParentNSTTL   uint32              `json:"parent_ns_ttl"`
	Glue          map[string][]string `json:"glue"` // NS name → addresses
	ZoneNS        []string            `json:"zone_ns"`
	Servers       []ServerReport      `json:"servers"`
	Findings      []Finding           `json:"findings"`
}

// ServerReport is what one address of one name server of the zone said.
type ServerReport struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// Result is one of ok, timeout, no-listener, unreachable, refused,
	// servfail, referral, not-authoritative, no-soa, error.
	Result    string   `json:"result"`
	Detail    string   `json:"detail,omitempty"`
	Transport string   `json:"transport,omitempty"` // udp, or tcp after a truncated answer
	Serial    uint32   `json:"serial,omitempty"`
	NS        []string `json:"ns,omitempty"`
	NSTTL     uint32   `json:"ns_ttl,omitempty"`
	RTTms     float64  `json:"rtt_ms,omitempty"`
}

// Count returns how many findings have severity s.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Failed reports whether any finding is an error.
func (r *Report) Failed() bool { return r.Count(Error) > 0 }

// Check checks the delegation of zone. Its error is for input it cannot
// use (a bad zone name or address); everything it finds, including a
// parent it cannot reach, is a finding in the report.
func Check(ctx context.Context, zone string, opts Options) (*Report, error) {
	c, err := newChecker(zone, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	c.run(ctx)
	return c.rep, nil
}

// newChecker validates zone and opts and fills in defaults.
func newChecker(zone string, opts Options) (*checker, error) {
	if _, ok := dns.IsDomainName(zone); !ok || zone == "" || zone == "." {
		return nil, fmt.Errorf("delegation: %q is not a zone name below the root", zone)
	}
	zone = strings.ToLower(dns.Fqdn(zone))
	opts.Port = cmp0(opts.Port, DefaultPort)
	opts.QueryTimeout = cmp0(opts.QueryTimeout, DefaultQueryTimeout)
	opts.Tries = cmp0(opts.Tries, DefaultTries)
	opts.Timeout = cmp0(opts.Timeout, DefaultTimeout)
	if opts.LookupHost == nil {
		opts.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	c := &checker{opts: opts, zone: zone, rep: &Report{Zone: zone, Glue: map[string][]string{}}}
	if opts.Parent != "" {
		var err error
		if c.parentHost, c.parentPort, err = splitHostPort(opts.Parent); err != nil {
			return nil, fmt.Errorf("delegation: parent %w", err)
		}
	}
	if len(opts.Roots) == 0 {
		c.roots = rootServers()
	}
	for _, r := range opts.Roots {
		ap, err := parseAddrPort(r)
		if err != nil {
			return nil, fmt.Errorf("delegation: root %w", err)
		}
		c.roots = append(c.roots, nameServer{name: r, addrs: []netip.AddrPort{ap}})
	}
	return c, nil
}

func cmp0[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// parseAddrPort reads IP[:port] (port 53 if absent; IPv6 with a port in
// brackets).
func parseAddrPort(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), DefaultPort), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP[:port]", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// splitHostPort reads host[:port] (port 53 if absent).
func splitHostPort(s string) (host string, port uint16, err error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		host, p = strings.Trim(s, "[]"), strconv.Itoa(DefaultPort)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("%q has a bad port", s)
	}
	if _, ok := dns.IsDomainName(host); !ok || host == "" || strings.ContainsAny(host, " \t") {
		return "", 0, fmt.Errorf("%q is not ADDR[:PORT]", s)
	}
	return host, uint16(n), nil
}

// inZone reports whether name (canonical) is origin or below it.
func inZone(name, origin string) bool {
	return name == origin || origin == "." || strings.HasSuffix(name, "."+origin)
}

// sortedSet returns the distinct canonical names of names, sorted.
func sortedSet(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, strings.ToLower(dns.Fqdn(n)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
