package resolver

// Zone cuts (RFC 1034 §4.2.1 and §4.3.2). NS records below a zone's apex
// in its static records delegate that name, and everything below it, to
// other servers: the zone is no longer authoritative there. A query at or
// below a cut gets a referral: rcode NOERROR, AA clear, an empty answer,
// the cut's NS set in the authority section and, in the additional
// section, the addresses of those servers that the zone holds (glue, and
// any other A/AAAA of theirs inside our zones). A DS query at the cut
// itself is the parent side's (RFC 4035 §3.1.4.1) and answered as usual.
//
// config rejects other data below a cut (it would be occluded) and
// services there, so a cut's subtree holds glue at most. The fast wire
// path leaves every name at or below a cut to the general path.

import (
	"slices"
	"strings"

	"github.com/miekg/dns"

	"meridian/config"
)

// cut is one delegation inside one of our zones. It is immutable once
// built and shared by every referral.
type cut struct {
	name string   // the delegated name, canonical
	ns   []dns.RR // its NS set, clipped: appending to it copies
	glue []dns.RR // A and AAAA records of its name servers, clipped
}

// findCuts records every name below a zone apex that has an NS set. A cut
// below another cut is occluded by it and left out.
func (t *table) findCuts() {
	var cuts []*cut
	for name, n := range t.names {
		if ns := n.rrsets[dns.TypeNS]; ns != nil && name != n.zone.origin {
			cuts = append(cuts, &cut{name: name, ns: slices.Clip(ns)})
		}
	}
	for _, c := range cuts {
		if !slices.ContainsFunc(cuts, func(o *cut) bool { return o != c && config.InZone(c.name, o.name) }) {
			t.cuts = append(t.cuts, c)
		}
	}
	slices.SortFunc(t.cuts, func(a, b *cut) int { return strings.Compare(a.name, b.name) })
	for _, c := range t.cuts {
		for _, rr := range c.ns {
			if n := t.names[strings.ToLower(rr.(*dns.NS).Ns)]; n != nil {
				c.glue = append(c.glue, n.rrsets[dns.TypeA]...)
				c.glue = append(c.glue, n.rrsets[dns.TypeAAAA]...)
			}
		}
		c.glue = slices.Clip(c.glue)
	}
}

// cutOf returns the cut at or above name (canonical), or nil.
func (t *table) cutOf(name string) *cut {
	for _, c := range t.cuts {
		if config.InZone(name, c.name) {
			return c
		}
	}
	return nil
}

// delegated reports whether name (lower case, presentation form, as the
// fast path holds it) lies at or below a cut. It does not allocate.
func (t *table) delegated(name []byte) bool {
	for _, c := range t.cuts {
		if len(name) >= len(c.name) && string(name[len(name)-len(c.name):]) == c.name &&
			(len(name) == len(c.name) || name[len(name)-len(c.name)-1] == '.') {
			return true
		}
	}
	return false
}

// refers reports whether a query for qtype at name (canonical) gets c's
// referral: everything at or below the cut but DS at the cut itself.
func (c *cut) refers(name string, qtype uint16) bool {
	return c != nil && (name != c.name || qtype != dns.TypeDS)
}

// refer makes resp the referral to c's servers.
func (c *cut) refer(resp *dns.Msg) {
	resp.Authoritative = false
	resp.Ns = c.ns
	resp.Extra = append(resp.Extra, c.glue...)
}
