package delegation

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// target is one address of one name server of the zone.
type target struct {
	name string
	addr netip.AddrPort
}

// targets returns every address of every name server the parent lists:
// glue, or for a server outside the zone its address found elsewhere. A
// server inside the zone without glue is an error; it is returned in
// unglued, to be looked up in the zone itself.
func (c *checker) targets(ctx context.Context, ref referral) (ts []target, unglued []string) {
	for _, name := range ref.ns {
		addrs := ref.glue[name]
		switch {
		case len(addrs) > 0:
		case inZone(name, c.zone):
			c.add(Error, "glue", "no glue for %s: it lies inside %s, so resolvers cannot find its address", name, c.zone)
			unglued = append(unglued, name)
			continue
		default:
			var err error
			if addrs, err = c.lookup(ctx, name); err != nil {
				c.add(Error, "glue", "cannot find an address for %s (no glue; it lies outside the zone): %v", name, err)
				continue
			}
		}
		c.addrs[name] = addrs
		for _, a := range c.withPort(addrs) {
			ts = append(ts, target{name: name, addr: a})
		}
	}
	return ts, unglued
}

// lookup finds the addresses of a name server outside the zone: from the
// root down when the check walked, else from the parent server (if it
// answers authoritatively) or the system resolver.
func (c *checker) lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	if c.walked {
		return c.walkAddrs(ctx, name, 1)
	}
	var out []netip.Addr
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		if m, err := c.askAny(ctx, c.parents, name, qtype); err == nil && m.Authoritative {
			out = append(out, answerAddrs(m, qtype)...)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	addrs, err := c.opts.LookupHost(ctx, strings.TrimSuffix(name, "."))
	if err != nil {
		return nil, err
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// targetsFromZone finds the addresses of name servers that have no glue
// by asking the zone's servers that answered, so that they can be checked
// all the same.
func (c *checker) targetsFromZone(ctx context.Context, names []string) []target {
	var ts []target
	for _, name := range names {
		addrs, from := c.zoneAddrs(ctx, name)
		if len(addrs) == 0 {
			c.add(Error, "glue", "%s has no address in the zone either: it cannot be checked", name)
			continue
		}
		c.addrs[name] = addrs
		c.add(OK, "glue", "%s is %s according to %s: checked at that address", name, addrList(addrs), from)
		for _, a := range c.withPort(addrs) {
			ts = append(ts, target{name: name, addr: a})
		}
	}
	return ts
}

// zoneAddrs asks the first server that answered authoritatively for the
// A and AAAA records of name, and says who it asked.
func (c *checker) zoneAddrs(ctx context.Context, name string) ([]netip.Addr, string) {
	for _, s := range c.rep.Servers {
		if s.Result != "ok" {
			continue
		}
		ap, _ := netip.ParseAddrPort(s.Addr)
		var out []netip.Addr
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if r, err := c.exchange(ctx, ap, name, qtype); err == nil && r.msg.Authoritative {
				out = append(out, answerAddrs(r.msg, qtype)...)
			}
		}
		return out, fmt.Sprintf("%s (%s)", s.Name, s.Addr)
	}
	return nil, ""
}

// askServers asks every target for the zone's SOA and NS set, in
// parallel, and reports each.
func (c *checker) askServers(ctx context.Context, ts []target) []ServerReport {
	out := make([]ServerReport, len(ts))
	parallel(len(ts), maxParallel, func(i int) { out[i] = c.askServer(ctx, ts[i]) })
	for _, s := range out {
		c.rep.Findings = append(c.rep.Findings, c.serverFinding(s))
	}
	return out
}

// askServer asks one address of a name server for the zone's SOA, then
// (if that came back authoritatively) for its NS set.
func (c *checker) askServer(ctx context.Context, t target) ServerReport {
	s := ServerReport{Name: t.name, Addr: t.addr.String()}
	r, err := c.exchange(ctx, t.addr, c.zone, dns.TypeSOA)
	if err != nil {
		s.Result, s.Detail = resultOf(err), err.Error()
		return s
	}
	s.Transport, s.RTTms = r.transport, float64(r.rtt.Microseconds())/1000
	if s.Result, s.Detail = c.authority(r.msg); s.Result != "" {
		return s
	}
	for _, rr := range r.msg.Answer {
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, c.zone) {
			s.Serial = soa.Serial
		}
	}
	r, err = c.exchange(ctx, t.addr, c.zone, dns.TypeNS)
	if err != nil {
		s.Result, s.Detail = resultOf(err), "answered SOA, then not NS: "+err.Error()
		return s
	}
	if s.Result, s.Detail = c.authority(r.msg); s.Result != "" {
		return s
	}
	s.NS, s.NSTTL = nsOf(r.msg.Answer, c.zone), minTTL(r.msg.Answer, dns.TypeNS)
	if r.transport == "tcp" {
		s.Transport = "tcp"
	}
	s.Result = "ok"
	return s
}

// resultOf is the ServerReport.Result of a query error.
func resultOf(err error) string {
	switch cl := errClass(err); cl {
	case "timeout", "no-listener", "unreachable":
		return cl
	}
	return "error"
}

// authority judges a reply to a query for the zone's SOA or NS: "" when
// it is an authoritative answer with the records asked for, else the
// result and what was wrong.
func (c *checker) authority(m *dns.Msg) (result, detail string) {
	switch {
	case m.Rcode == dns.RcodeRefused:
		return "refused", "REFUSED"
	case m.Rcode == dns.RcodeServerFailure:
		return "servfail", "SERVFAIL"
	case !m.Authoritative:
		if ref, ok := parseReferral(m); ok {
			return "referral", fmt.Sprintf("a referral to %s at %s", ref.owner, list(ref.ns))
		}
		return "not-authoritative", describe(m)
	case m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0:
		return "no-soa", fmt.Sprintf("%s, %d answer records", rcodeName(m.Rcode), len(m.Answer))
	}
	q := m.Question[0]
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == q.Qtype && strings.EqualFold(rr.Header().Name, c.zone) {
			return "", ""
		}
	}
	return "no-soa", fmt.Sprintf("no %s record of %s in the answer", dns.TypeToString[q.Qtype], c.zone)
}

// serverFinding says in plain words what one server address did.
func (c *checker) serverFinding(s ServerReport) Finding {
	where := fmt.Sprintf("%s (%s)", s.Name, s.Addr)
	var f *Finding
	switch s.Result {
	case "ok":
		tcp := ""
		if s.Transport == "tcp" {
			tcp = ", over TCP after a truncated UDP answer"
		}
		f = finding(OK, "server", "%s answers authoritatively: SOA serial %d, NS %s (TTL %d s)%s", where, s.Serial, list(s.NS), s.NSTTL, tcp)
	case "timeout", "no-listener", "unreachable", "error":
		f = silentFinding("server", where, errors.New(s.Detail))
		if s.Result == "unreachable" {
			f.Severity = Warning
		}
	case "refused", "servfail":
		f = finding(Error, "server", "%s is lame: it answers %s for %s, so it does not serve the zone", where, s.Detail, c.zone)
	case "referral":
		f = finding(Error, "server", "%s is lame: it answers with %s, not authoritatively (AA clear): it does not serve %s itself", where, s.Detail, c.zone)
	case "not-authoritative":
		f = finding(Error, "server", "%s is lame: it answers %s: it is not authoritative for %s (a resolver or forwarder?)", where, s.Detail, c.zone)
	default:
		f = finding(Error, "server", "%s answers authoritatively but not with the zone's records (%s): it serves another version of %s or none", where, s.Detail, c.zone)
	}
	return *f
}

// nsOf returns the targets of the NS records of owner in rrs, canonical
// and sorted.
func nsOf(rrs []dns.RR, owner string) []string {
	var out []string
	for _, rr := range rrs {
		if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, owner) {
			out = append(out, ns.Ns)
		}
	}
	if out == nil {
		return nil
	}
	return sortedSet(out)
}

// minTTL returns the smallest TTL of the records of type t in rrs.
func minTTL(rrs []dns.RR, t uint16) uint32 {
	var ttl uint32
	first := true
	for _, rr := range rrs {
		if rr.Header().Rrtype == t && (first || rr.Header().Ttl < ttl) {
			ttl, first = rr.Header().Ttl, false
		}
	}
	return ttl
}

// list writes names as "a, b", or "(none)".
func list(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

// addrList writes addresses sorted as "a, b", or "(none)".
func addrList(addrs []netip.Addr) string {
	s := make([]string, 0, len(addrs))
	for _, a := range sortedAddrs(addrs) {
		s = append(s, a.String())
	}
	return list(s)
}

// sortedAddrs returns the distinct addresses, sorted.
func sortedAddrs(addrs []netip.Addr) []netip.Addr {
	out := slices.Clone(addrs)
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}
