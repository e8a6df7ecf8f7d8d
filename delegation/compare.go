package delegation

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// answered returns the servers that answered authoritatively.
func (c *checker) answered() []ServerReport {
	var out []ServerReport
	for _, s := range c.rep.Servers {
		if s.Result == "ok" {
			out = append(out, s)
		}
	}
	return out
}

// compareNS compares the NS set of the parent's delegation with the one
// the zone's servers answer, and theirs with each other.
func (c *checker) compareNS(ref referral) {
	ok := c.answered()
	if len(ok) == 0 {
		c.add(Error, "ns", "no server of %s answers authoritatively: the zone's own NS set is unknown", c.zone)
		return
	}
	zoneNS := ok[0].NS
	c.rep.ZoneNS = zoneNS
	for _, s := range ok[1:] {
		if !slices.Equal(s.NS, zoneNS) {
			c.add(Error, "ns", "the zone's servers disagree on its NS set: %s (%s) lists %s; %s (%s) lists %s",
				ok[0].Name, ok[0].Addr, list(zoneNS), s.Name, s.Addr, list(s.NS))
		}
	}
	if slices.Equal(ref.ns, zoneNS) {
		c.add(OK, "ns", "the parent and the zone list the same NS set: %s", list(zoneNS))
		return
	}
	msg := fmt.Sprintf("NS sets differ: the parent lists %s; the zone's servers list %s", list(ref.ns), list(zoneNS))
	if only := minus(zoneNS, ref.ns); len(only) > 0 {
		msg += "; only in the zone: " + list(only)
	}
	if only := minus(ref.ns, zoneNS); len(only) > 0 {
		msg += "; only at the parent: " + list(only)
	}
	c.add(Error, "ns", "%s", msg)
}

// minus returns the names of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			out = append(out, n)
		}
	}
	return out
}

// compareSerials reports SOA serials that differ between servers.
func (c *checker) compareSerials() {
	ok := c.answered()
	if len(ok) == 0 {
		return
	}
	var parts []string
	serials := map[uint32]bool{}
	for _, s := range ok {
		serials[s.Serial] = true
		parts = append(parts, fmt.Sprintf("%d at %s (%s)", s.Serial, s.Name, s.Addr))
	}
	if len(serials) > 1 {
		c.add(Error, "soa", "SOA serials differ: %s: the servers serve different versions of the zone", strings.Join(parts, ", "))
		return
	}
	c.add(OK, "soa", "every server that answered (%d) has SOA serial %d", len(ok), ok[0].Serial)
}

// compareTTLs reports the NS TTLs at the parent and in the zone, and warns
// about very short and very long ones.
func (c *checker) compareTTLs(ref referral) {
	ok := c.answered()
	c.ttlBounds("the parent's", ref.ttl)
	if len(ok) == 0 {
		return
	}
	zoneTTL := ok[0].NSTTL
	for _, s := range ok[1:] {
		zoneTTL = min(zoneTTL, s.NSTTL)
	}
	c.ttlBounds("the zone's", zoneTTL)
	note := ""
	if zoneTTL != ref.ttl {
		note = "; resolvers keep the zone's once they have asked it"
	}
	c.add(OK, "ttl", "NS TTL %d s at the parent, %d s in the zone%s", ref.ttl, zoneTTL, note)
}

func (c *checker) ttlBounds(whose string, ttl uint32) {
	switch {
	case ttl < ShortNSTTL:
		c.add(Warning, "ttl", "%s NS TTL of %d s is very short: resolvers ask for the name servers again every %d s (%d s or more is usual)", whose, ttl, ttl, ShortNSTTL)
	case ttl > LongNSTTL:
		c.add(Warning, "ttl", "%s NS TTL of %d s is very long: a change of name servers takes up to %s to reach every resolver", whose, ttl, time.Duration(ttl)*time.Second)
	}
}

// compareGlue compares the glue of each name server inside the zone with
// the address records the zone itself holds for it.
func (c *checker) compareGlue(ctx context.Context, ref referral) {
	for _, name := range ref.ns {
		glue := ref.glue[name]
		if len(glue) == 0 || !inZone(name, c.zone) {
			continue
		}
		own, from := c.zoneAddrs(ctx, name)
		switch {
		case from == "":
			return // no server answered: nothing to compare with
		case len(own) == 0:
			c.add(Warning, "glue", "the parent's glue gives %s the address %s, but the zone has no address record for it (asked %s)", name, addrList(glue), from)
		case !slices.Equal(sortedAddrs(own), sortedAddrs(glue)):
			c.add(Error, "glue", "the glue for %s at the parent (%s) differs from the zone's own address records (%s, from %s)", name, addrList(glue), addrList(own), from)
		default:
			c.add(OK, "glue", "the glue for %s (%s) matches the zone's own address records", name, addrList(glue))
		}
	}
}

// compareConfig compares the delegation with the operator's configuration:
// zones.ns with the parent's NS set, the zone's address records of its name
// servers with the glue (or the addresses found), and the node's listen
// addresses with the addresses of the name servers.
func (c *checker) compareConfig(ref referral) {
	e := c.opts.Expect
	want := sortedSet(e.NS)
	if slices.Equal(want, ref.ns) {
		c.add(OK, "config", "zones.ns in %s matches the parent's NS set", e.Source)
	} else {
		c.add(Error, "config", "zones.ns in %s lists %s; the parent lists %s", e.Source, list(want), list(ref.ns))
	}
	for _, name := range slices.Sorted(maps.Keys(e.Addrs)) {
		used, ok := c.addrs[name]
		switch {
		case !ok:
			continue // not in the delegation, or no address found: reported above
		case slices.Equal(sortedAddrs(e.Addrs[name]), sortedAddrs(used)):
			c.add(OK, "config", "the zone records in %s give %s the address %s, as the delegation does", e.Source, name, addrList(used))
		default:
			c.add(Error, "config", "the zone records in %s give %s the address %s; the delegation points at %s", e.Source, name, addrList(e.Addrs[name]), addrList(used))
		}
	}
	for _, l := range e.Listen {
		c.compareListen(l)
	}
}

// compareListen checks that the node is one of the delegation's servers.
func (c *checker) compareListen(l netip.AddrPort) {
	e := c.opts.Expect
	if l.Addr().IsUnspecified() {
		c.add(OK, "config", "dns.listen %s in %s covers every address of the node: not compared with the delegation", l, e.Source)
	} else if name := c.serverAt(l.Addr()); name == "" {
		c.add(Warning, "config", "this node listens on %s (dns.listen in %s), an address no name server of the delegation has", l, e.Source)
	} else {
		c.add(OK, "config", "this node listens on %s (dns.listen in %s): it is %s in the delegation", l, e.Source, name)
	}
	if l.Port() != c.opts.Port {
		c.add(Warning, "config", "this node listens on port %d (dns.listen in %s), but name servers are asked on port %d", l.Port(), e.Source, c.opts.Port)
	}
}

// serverAt returns the names of the name servers with address a.
func (c *checker) serverAt(a netip.Addr) string {
	var names []string
	for name, addrs := range c.addrs {
		if slices.Contains(addrs, a.Unmap()) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, " and ")
}

// sameGlue reports whether two referrals give the same glue.
func sameGlue(a, b map[string][]netip.Addr) bool {
	return maps.EqualFunc(a, b, func(x, y []netip.Addr) bool { return slices.Equal(sortedAddrs(x), sortedAddrs(y)) })
}

// glueString writes glue as "ns1 192.0.2.1; ns2 192.0.2.2", or "none".
func glueString(g map[string][]netip.Addr) string {
	if len(g) == 0 {
		return "none"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(g)) {
		parts = append(parts, name+" "+addrList(g[name]))
	}
	return strings.Join(parts, "; ")
}
