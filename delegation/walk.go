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

// rootHints are the root servers' addresses (IANA named.root, 2023-11,
// after b.root-servers.net moved).
var rootHints = []struct{ name, v4, v6 string }{
	{"a.root-servers.net.", "198.41.0.4", "2001:503:ba3e::2:30"},
	{"b.root-servers.net.", "170.247.170.2", "2801:1b8:10::b"},
	{"c.root-servers.net.", "192.33.4.12", "2001:500:2::c"},
	{"d.root-servers.net.", "199.7.91.13", "2001:500:2d::d"},
	{"e.root-servers.net.", "192.203.230.10", "2001:500:a8::e"},
	{"f.root-servers.net.", "192.5.5.241", "2001:500:2f::f"},
	{"g.root-servers.net.", "192.112.36.4", "2001:500:12::d0d"},
	{"h.root-servers.net.", "198.97.190.53", "2001:500:1::53"},
	{"i.root-servers.net.", "192.36.148.17", "2001:7fe::53"},
	{"j.root-servers.net.", "192.58.128.30", "2001:503:c27::2:30"},
	{"k.root-servers.net.", "193.0.14.129", "2001:7fd::1"},
	{"l.root-servers.net.", "199.7.83.42", "2001:500:9f::42"},
	{"m.root-servers.net.", "202.12.27.33", "2001:dc3::35"},
}

// rootServers returns the built-in root servers, IPv4 address first.
func rootServers() []nameServer {
	out := make([]nameServer, 0, len(rootHints))
	for _, h := range rootHints {
		out = append(out, nameServer{name: h.name, addrs: []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr(h.v4), DefaultPort),
			netip.AddrPortFrom(netip.MustParseAddr(h.v6), DefaultPort)}})
	}
	return out
}

// nameServer is a server's name and the addresses to ask it at.
type nameServer struct {
	name  string
	addrs []netip.AddrPort
}

// maxReferrals bounds the referrals one walk follows, and maxDepth the
// walks nested to find a name server's address.
const (
	maxReferrals = 16
	maxDepth     = 3
)

// referral is a non-authoritative answer handing a name down to the
// servers of a zone cut.
type referral struct {
	owner string
	ns    []string // canonical, sorted
	ttl   uint32   // the smallest TTL of the NS set
	glue  map[string][]netip.Addr
}

// parseReferral reads m as a referral: NOERROR, AA clear, no answer and an
// NS set in the authority section.
func parseReferral(m *dns.Msg) (referral, bool) {
	if m.Rcode != dns.RcodeSuccess || m.Authoritative || len(m.Answer) > 0 {
		return referral{}, false
	}
	ref := referral{glue: map[string][]netip.Addr{}}
	for _, rr := range m.Ns {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		owner := strings.ToLower(ns.Hdr.Name)
		if ref.owner != "" && owner != ref.owner {
			return referral{}, false // NS sets of two owners: not a referral we understand
		}
		if ref.owner == "" || ns.Hdr.Ttl < ref.ttl {
			ref.ttl = ns.Hdr.Ttl
		}
		ref.owner = owner
		ref.ns = append(ref.ns, ns.Ns)
	}
	if ref.owner == "" {
		return referral{}, false
	}
	ref.ns = sortedSet(ref.ns)
	for _, rr := range m.Extra {
		name := strings.ToLower(rr.Header().Name)
		if a, ok := addrOf(rr); ok && slices.Contains(ref.ns, name) && !slices.Contains(ref.glue[name], a) {
			ref.glue[name] = append(ref.glue[name], a)
		}
	}
	return ref, true
}

// addrOf returns the address of an A or AAAA record.
func addrOf(rr dns.RR) (netip.Addr, bool) {
	switch rr := rr.(type) {
	case *dns.A:
		a, ok := netip.AddrFromSlice(rr.A)
		return a.Unmap(), ok
	case *dns.AAAA:
		a, ok := netip.AddrFromSlice(rr.AAAA)
		return a, ok
	}
	return netip.Addr{}, false
}

// descend asks for qname/qtype from the root servers down, following
// referrals, as `dig +trace` does. It stops at the first reply that is not
// a referral, or at a referral to stopAt, and returns that reply with the
// cut whose servers gave it.
func (c *checker) descend(ctx context.Context, qname string, qtype uint16, stopAt string, depth int) (cut string, servers []nameServer, last *dns.Msg, err error) {
	cut, servers = ".", c.roots
	for range maxReferrals {
		m, err := c.askAny(ctx, servers, qname, qtype)
		if err != nil {
			return cut, servers, nil, fmt.Errorf("no server of %s answered for %s %s: %w", cut, qname, dns.TypeToString[qtype], err)
		}
		ref, ok := parseReferral(m)
		if !ok || ref.owner == stopAt {
			return cut, servers, m, nil
		}
		if ref.owner == cut || !inZone(ref.owner, cut) || !inZone(qname, ref.owner) {
			return cut, servers, nil, fmt.Errorf("a server of %s refers %s to %s, which does not lead down to it", cut, qname, ref.owner)
		}
		next, err := c.serversOf(ctx, ref, depth)
		if err != nil {
			return cut, servers, nil, err
		}
		cut, servers = ref.owner, next
	}
	return cut, servers, nil, fmt.Errorf("more than %d referrals on the way to %s", maxReferrals, qname)
}

// askAny asks the servers one address after another, every IPv4 address
// before any IPv6 one, until one replies NOERROR or NXDOMAIN either
// authoritatively or with a referral, and returns that reply.
func (c *checker) askAny(ctx context.Context, servers []nameServer, qname string, qtype uint16) (*dns.Msg, error) {
	var errs []error
	for _, v6 := range []bool{false, true} {
		for _, s := range servers {
			for _, a := range s.addrs {
				if a.Addr().Is6() != v6 {
					continue
				}
				m, err := c.askOne(ctx, s.name, a, qname, qtype)
				if err == nil {
					return m, nil
				}
				errs = append(errs, err)
				if cl := errClass(err); cl == "deadline" || cl == "budget" {
					return nil, oneLine(errs)
				}
			}
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("no server address to ask")
	}
	return nil, oneLine(errs)
}

// askOne asks one address for qname/qtype and returns the reply if it is
// an authoritative answer or a referral.
func (c *checker) askOne(ctx context.Context, name string, a netip.AddrPort, qname string, qtype uint16) (*dns.Msg, error) {
	r, err := c.exchange(ctx, a, qname, qtype)
	switch {
	case err != nil:
		return nil, &queryError{class: errClass(err), text: fmt.Sprintf("%s (%s): %v", name, a, err), err: err}
	case r.msg.Rcode != dns.RcodeSuccess && r.msg.Rcode != dns.RcodeNameError:
		return nil, fmt.Errorf("%s (%s): %s", name, a, rcodeName(r.msg.Rcode))
	case !r.msg.Authoritative && !isReferral(r.msg):
		return nil, fmt.Errorf("%s (%s): neither an authoritative answer nor a referral: %s", name, a, describe(r.msg))
	}
	return r.msg, nil
}

// isReferral reports whether m is a referral.
func isReferral(m *dns.Msg) bool {
	_, ok := parseReferral(m)
	return ok
}

// describe sums up a reply that is not what was expected, e.g.
// "NXDOMAIN, AA clear, RA set, 0 answer, 0 authority, 0 additional records".
func describe(m *dns.Msg) string {
	flag := func(name string, on bool) string {
		if on {
			return name + " set"
		}
		return name + " clear"
	}
	extra := len(m.Extra)
	if m.IsEdns0() != nil {
		extra--
	}
	return fmt.Sprintf("%s, %s, %s, %d answer, %d authority, %d additional records", rcodeName(m.Rcode),
		flag("AA", m.Authoritative), flag("RA", m.RecursionAvailable), len(m.Answer), len(m.Ns), extra)
}

// oneLine joins errors into one line, the first three and a count of the
// rest, so that a finding stays one line however many servers failed.
func oneLine(errs []error) error {
	const show = 3
	var parts []string
	for i, err := range errs {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(errs)-show))
			break
		}
		parts = append(parts, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return errors.New(strings.Join(parts, "; "))
}

// serversOf returns the servers of a referral with their addresses: glue,
// else found by walking again (up to maxDepth walks deep). Servers without
// an address are left out; none at all is an error.
func (c *checker) serversOf(ctx context.Context, ref referral, depth int) ([]nameServer, error) {
	var out []nameServer
	var errs []error
	for _, name := range ref.ns {
		addrs := ref.glue[name]
		if len(addrs) == 0 && depth < maxDepth && !inZone(name, ref.owner) {
			var err error
			if addrs, err = c.walkAddrs(ctx, name, depth+1); err != nil {
				errs = append(errs, err)
			}
		}
		if len(addrs) > 0 {
			out = append(out, nameServer{name: name, addrs: c.withPort(addrs)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address for any server of %s: %w", ref.owner, oneLine(errs))
	}
	return out, nil
}

// walkAddrs finds the IPv4 and IPv6 addresses of name from the root down.
func (c *checker) walkAddrs(ctx context.Context, name string, depth int) ([]netip.Addr, error) {
	var out []netip.Addr
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		_, _, m, err := c.descend(ctx, name, qtype, "", depth)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, answerAddrs(m, qtype)...)
	}
	if len(out) == 0 {
		errs = append(errs, fmt.Errorf("%s has no address", name))
		return nil, oneLine(errs)
	}
	return out, nil
}

// answerAddrs returns the addresses of type qtype in m's answer section.
func answerAddrs(m *dns.Msg, qtype uint16) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		if a, ok := addrOf(rr); ok && rr.Header().Rrtype == qtype && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// withPort gives each address the port name servers are asked on.
func (c *checker) withPort(addrs []netip.Addr) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(a, c.opts.Port))
	}
	return out
}

// rcodeName names an rcode, e.g. "SERVFAIL".
func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}
