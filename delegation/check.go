package delegation

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// maxParallel bounds the servers asked at once.
const maxParallel = 8

// checker runs one check and writes its report.
type checker struct {
	opts   Options
	zone   string
	roots  []nameServer
	walked bool // the parent's servers were found from the roots
	// parentHost and parentPort are Options.Parent split.
	parentHost string
	parentPort uint16
	parents    []nameServer // the parent zone's servers
	addrs      map[string][]netip.Addr
	queries    atomic.Int64
	rep        *Report
}

// add appends a finding to the report.
func (c *checker) add(sev Severity, check, format string, args ...any) {
	c.rep.Findings = append(c.rep.Findings, Finding{Severity: sev, Check: check, Message: fmt.Sprintf(format, args...)})
}

// run checks the delegation step by step; a step that finds nothing to
// go on ends the check with the findings so far.
func (c *checker) run(ctx context.Context) {
	c.addrs = map[string][]netip.Addr{}
	if !c.findParent(ctx) {
		return
	}
	ref, ok := c.askParents(ctx)
	if !ok {
		return
	}
	targets, unglued := c.targets(ctx, ref)
	c.rep.Servers = c.askServers(ctx, targets)
	if len(unglued) > 0 {
		c.rep.Servers = append(c.rep.Servers, c.askServers(ctx, c.targetsFromZone(ctx, unglued))...)
	}
	c.compareNS(ref)
	c.compareSerials()
	c.compareTTLs(ref)
	c.compareGlue(ctx, ref)
	if c.opts.Expect != nil {
		c.compareConfig(ref)
	}
}

// findParent finds the parent zone's servers: the one given, or the
// servers the walk from the root reaches just above the zone.
func (c *checker) findParent(ctx context.Context) bool {
	if c.opts.Parent == "" {
		cut, servers, _, err := c.descend(ctx, c.zone, dns.TypeNS, c.zone, 0)
		if err != nil {
			c.add(Error, "parent", "cannot find the servers of the parent zone from the root: %v", err)
			return false
		}
		c.rep.Parent, c.parents, c.walked = cut, servers, true
		return true
	}
	host, port := c.parentHost, c.parentPort
	addrs := []netip.Addr{}
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = append(addrs, a.Unmap())
	} else if addrs, err = c.opts.LookupHost(ctx, host); err != nil || len(addrs) == 0 {
		c.add(Error, "parent", "cannot find the address of the parent server %s: %v", host, err)
		return false
	}
	s := nameServer{name: host}
	for _, a := range addrs {
		s.addrs = append(s.addrs, netip.AddrPortFrom(a.Unmap(), port))
	}
	c.parents = []nameServer{s}
	return true
}

// parentAnswer is what one address of a parent server said: a
// delegation (ok), or a finding saying what it said instead.
type parentAnswer struct {
	name    string
	addr    netip.AddrPort
	ref     referral
	ok      bool
	finding *Finding
	// unreachable is set when this host has no route to addr.
	unreachable bool
}

// askParents asks every address of every parent server for the zone's NS
// set and returns the delegation the first good answer gives, having
// reported every server that answered otherwise or differently.
func (c *checker) askParents(ctx context.Context) (referral, bool) {
	var asks []parentAnswer
	for _, s := range c.parents {
		for _, a := range s.addrs {
			asks = append(asks, parentAnswer{name: s.name, addr: a})
			c.rep.ParentServers = append(c.rep.ParentServers, a.String())
		}
	}
	parallel(len(asks), maxParallel, func(i int) { c.askParent(ctx, &asks[i]) })
	var good []parentAnswer
	var unreachable []string
	for _, p := range asks {
		switch {
		case p.unreachable:
			unreachable = append(unreachable, p.addr.String())
		case p.finding != nil:
			c.rep.Findings = append(c.rep.Findings, *p.finding)
		}
		if p.ok {
			good = append(good, p)
		}
	}
	if len(unreachable) > 0 { // IPv6 addresses from a host without IPv6, typically: one line
		c.add(Warning, "parent", "%d parent server address(es) not checked: no route to them from here: %s", len(unreachable), strings.Join(unreachable, ", "))
	}
	if len(good) == 0 {
		c.add(Error, "parent", "no parent server gives a delegation for %s", c.zone)
		return referral{}, false
	}
	c.agree(good)
	ref := good[0].ref
	c.rep.ParentNS, c.rep.ParentNSTTL = ref.ns, ref.ttl
	for name, addrs := range ref.glue {
		for _, a := range addrs {
			c.rep.Glue[name] = append(c.rep.Glue[name], a.String())
		}
	}
	return ref, true
}

// askParent asks one parent address for the zone's NS set.
func (c *checker) askParent(ctx context.Context, p *parentAnswer) {
	where := fmt.Sprintf("parent server %s (%s)", p.name, p.addr)
	r, err := c.exchange(ctx, p.addr, c.zone, dns.TypeNS)
	if err != nil {
		p.finding, p.unreachable = silentFinding("parent", where, err), errClass(err) == "unreachable"
		return
	}
	p.ref, p.ok, p.finding = c.parentReferral(where, r.msg)
}

// parentReferral reads a parent's reply to the zone's NS query: a referral
// to the zone, or an authoritative NS set when the server serves the zone
// too (with a warning). Anything else is an error finding.
func (c *checker) parentReferral(where string, m *dns.Msg) (referral, bool, *Finding) {
	if ref, ok := parseReferral(m); ok {
		if ref.owner == c.zone {
			return ref, true, nil
		}
		return referral{}, false, finding(Error, "parent", "%s refers to %s instead of delegating %s", where, ref.owner, c.zone)
	}
	switch {
	case m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError:
		return referral{}, false, finding(Error, "parent", "%s answers %s: it does not serve the parent zone of %s", where, rcodeName(m.Rcode), c.zone)
	case m.Authoritative && m.Rcode == dns.RcodeNameError:
		return referral{}, false, finding(Error, "parent", "%s says %s does not exist (NXDOMAIN): there is no delegation", where, c.zone)
	case m.Authoritative && len(nsOf(m.Answer, c.zone)) > 0:
		ref := referral{owner: c.zone, ns: nsOf(m.Answer, c.zone), ttl: minTTL(m.Answer, dns.TypeNS), glue: map[string][]netip.Addr{}}
		return ref, true, finding(Warning, "parent", "%s answers for %s itself (AA) instead of referring: it serves the zone too, so its delegation cannot be seen; its NS set is used", where, c.zone)
	case m.Authoritative:
		return referral{}, false, finding(Error, "parent", "%s has no delegation for %s: it answers authoritatively with no NS set", where, c.zone)
	}
	return referral{}, false, finding(Error, "parent", "%s answers neither with a referral nor authoritatively (%s): a resolver or something on the way answered, not a server of the parent zone", where, describe(m))
}

// agree reports parent servers that disagree with the first on the NS set
// or glue, and then the delegation itself.
func (c *checker) agree(good []parentAnswer) {
	first := good[0]
	same := 1
	for _, p := range good[1:] {
		switch {
		case !slices.Equal(p.ref.ns, first.ref.ns):
			c.add(Error, "parent", "parent servers disagree on the NS set: %s (%s) lists %s; %s (%s) lists %s",
				first.name, first.addr, list(first.ref.ns), p.name, p.addr, list(p.ref.ns))
		case !sameGlue(p.ref.glue, first.ref.glue):
			c.add(Error, "parent", "parent servers disagree on the glue: %s (%s) gives %s; %s (%s) gives %s",
				first.name, first.addr, glueString(first.ref.glue), p.name, p.addr, glueString(p.ref.glue))
		default:
			same++
		}
	}
	from := fmt.Sprintf("parent server %s (%s) delegates", first.name, first.addr)
	if len(good) > 1 {
		from = fmt.Sprintf("%d of %d answering parent server addresses delegate", same, len(good))
	}
	if c.rep.Parent != "" {
		from = c.rep.Parent + ": " + from
	}
	c.add(OK, "parent", "%s %s to %s (NS TTL %d s; glue: %s)", from, c.zone, list(first.ref.ns), first.ref.ttl, glueString(first.ref.glue))
}

// finding returns a new finding.
func finding(sev Severity, check, format string, args ...any) *Finding {
	return &Finding{Severity: sev, Check: check, Message: fmt.Sprintf(format, args...)}
}

// silentFinding reports a server that gave no answer: an error, but only
// a warning when this host has no route to it (IPv6, typically).
func silentFinding(check, where string, err error) *Finding {
	if errClass(err) == "unreachable" {
		return finding(Warning, check, "%s not checked: %v", where, err)
	}
	return finding(Error, check, "%s does not answer: %v", where, err)
}
