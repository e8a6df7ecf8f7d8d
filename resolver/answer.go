package resolver

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// maxCNAMEChase bounds how many in-zone CNAMEs one answer follows.
const maxCNAMEChase = 8

// ask is one query being answered: where it came from, and what the
// answer came to depend on.
type ask struct {
	rnd     rand64
	source  netip.Addr // the packet's source: the resolver
	client  netip.Addr // the ECS address when the query has one, else its source
	scope   uint8      // ECS scope: the prefix length the answer depended on
	ecs     *dns.EDNS0_SUBNET
	ecsAddr netip.Addr // the ECS option's address (invalid without one)
	sent    *sent
}

// cacheSubnet is the client subnet the answer so far is cached under.
func (a *ask) cacheSubnet() netip.Prefix {
	if a.ecs == nil {
		return netip.Prefix{}
	}
	return cacheSubnet(a.ecsAddr, a.ecs.SourceNetmask, a.scope)
}

// answer builds the response to req, which came from source, from table
// t, noting in snt (reset first; nil: not wanted) the service answers it
// carries for the recorder. It returns nil when req must not be answered
// (it is itself a response).
func (t *table) answer(req *dns.Msg, source netip.Addr, rnd rand64, snt *sent) *dns.Msg {
	if snt == nil {
		snt = new(sent)
	}
	snt.reset(t, source)
	if req.Response {
		return nil
	}
	resp := new(dns.Msg)
	resp.Id, resp.Response, resp.Opcode = req.Id, true, req.Opcode
	resp.RecursionDesired, resp.CheckingDisabled = req.RecursionDesired, req.CheckingDisabled
	resp.Question = req.Question
	a := &ask{rnd: rnd, source: source, client: source, sent: snt}
	if rcode := t.edns(req, resp, a); rcode != dns.RcodeSuccess {
		resp.Rcode = rcode
		return resp
	}
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
	default:
		t.lookup(req.Question[0], resp, a)
	}
	if a.ecs != nil {
		a.ecs.SourceScope = a.scope
	}
	snt.ecs = a.cacheSubnet()
	return resp
}

// edns adds our OPT record when the query has one, with NSID and ECS
// answered, and returns a non-success rcode when the OPT is unacceptable.
// An ECS option with a source prefix becomes a's client address.
func (t *table) edns(req, resp *dns.Msg, a *ask) int {
	opt := req.IsEdns0()
	if opt == nil {
		return dns.RcodeSuccess
	}
	out := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	out.SetUDPSize(t.udp)
	resp.Extra = append(resp.Extra, out)
	n := 0
	for _, rr := range req.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	if n > 1 {
		return dns.RcodeFormatError // RFC 6891 6.1.1
	}
	if opt.Version() != 0 {
		return dns.RcodeBadVers
	}
	for _, o := range opt.Option {
		switch o := o.(type) {
		case *dns.EDNS0_NSID:
			if t.nsid != nil {
				out.Option = append(out.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: hexString(t.nsid)})
			}
		case *dns.EDNS0_SUBNET:
			if !validECS(o) {
				return dns.RcodeFormatError
			}
			a.ecs = &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: o.Family,
				SourceNetmask: o.SourceNetmask, SourceScope: 0, Address: o.Address}
			out.Option = append(out.Option, a.ecs)
			if addr, ok := netip.AddrFromSlice(o.Address); ok && o.SourceNetmask > 0 {
				a.client = addr.Unmap() // RFC 7871 §7.1.2: prefix 0 means use the source
				a.ecsAddr = a.client
			}
		}
	}
	return dns.RcodeSuccess
}

// validECS applies RFC 7871 §7.1.2: a known family, a source prefix no longer
// than the address, and no address bits set beyond it.
func validECS(o *dns.EDNS0_SUBNET) bool {
	bits := map[uint16]int{1: 32, 2: 128}[o.Family]
	if bits == 0 || int(o.SourceNetmask) > bits || o.SourceScope != 0 {
		return false
	}
	a, ok := netip.AddrFromSlice(o.Address)
	if !ok {
		return o.SourceNetmask == 0
	}
	if o.Family == 1 {
		a = a.Unmap() // miekg/dns unpacks IPv4 into 16 bytes
	}
	p, err := a.Prefix(int(o.SourceNetmask))
	return err == nil && p.Addr() == a
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// lookup fills resp for question q.
func (t *table) lookup(q dns.Question, resp *dns.Msg, a *ask) {
	name := strings.ToLower(q.Name)
	z := t.zoneOf(name)
	if q.Qclass != dns.ClassINET || z == nil || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		resp.Rcode = dns.RcodeRefused
		return
	}
	if c := t.cutOf(name); c.refers(name, q.Qtype) {
		c.refer(resp)
		return
	}
	resp.Authoritative = true
	n := t.names[name]
	if n == nil {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{z.negativeSOA(z.negTTL)}
		return
	}
	t.answerNode(n, q.Qtype, resp, a, 0)
}

// answerNode appends n's records of type qtype, following in-zone CNAMEs.
func (t *table) answerNode(n *node, qtype uint16, resp *dns.Msg, a *ask, depth int) {
	rrs, ttl := t.records(n, qtype, a)
	if len(rrs) == 0 {
		resp.Ns = []dns.RR{n.zone.negativeSOA(ttl)}
		return
	}
	resp.Answer = append(resp.Answer, rrs...)
	cname, ok := rrs[0].(*dns.CNAME)
	if !ok || qtype == dns.TypeCNAME || qtype == dns.TypeANY || depth >= maxCNAMEChase {
		return
	}
	target := strings.ToLower(cname.Target)
	for _, rr := range resp.Answer {
		if strings.EqualFold(rr.Header().Name, target) {
			return // a loop: every name of it is answered once
		}
	}
	if t.cutOf(target) != nil {
		return // delegated: the resolver follows the CNAME to the referral itself
	}
	if next := t.names[target]; next != nil {
		t.answerNode(next, qtype, resp, a, depth+1)
	} else if z := t.zoneOf(target); z != nil {
		resp.Rcode = dns.RcodeNameError // RFC 6604: the rcode of the last name
		resp.Ns = []dns.RR{z.negativeSOA(z.negTTL)}
	}
}

// records returns n's answer for qtype, or none with the negative TTL to use.
func (t *table) records(n *node, qtype uint16, a *ask) ([]dns.RR, uint32) {
	if s := n.service; s != nil && n.rrsets[qtype] == nil {
		r, scope := t.place(s, a.client)
		a.scope = max(a.scope, scope)
		ch := t.chooser(s, a.source, a.cacheSubnet(), a.rnd)
		rrs, ends := s.records(qtype, r, &ch)
		a.sent.add(s, ends)
		return rrs, min(n.zone.negTTL, s.ttl)
	}
	if rrs := n.rrsets[dns.TypeCNAME]; rrs != nil {
		return rrs, n.zone.negTTL
	}
	if qtype == dns.TypeANY {
		return n.anyRRset(), n.zone.negTTL
	}
	return n.rrsets[qtype], n.zone.negTTL
}

// anyRRset answers ANY with one RRset, as RFC 8482 §4.2 allows: the
// lowest-numbered type the name has.
func (n *node) anyRRset() []dns.RR {
	var best uint16
	for t := range n.rrsets {
		if best == 0 || t < best {
			best = t
		}
	}
	return n.rrsets[best]
}

// place returns the region index from which a latency service answers
// client, and the ECS scope (prefix length) the placement used. Other
// policies do not depend on the client: index 0, scope 0.
func (t *table) place(s *service, client netip.Addr) (region int, scope uint8) {
	if !s.latency() {
		return 0, 0
	}
	pl := t.placer.Place(client)
	if int(pl.Rule) < len(t.placed) {
		t.placed[pl.Rule].Inc()
	}
	return t.regionIdx[pl.Region], pl.Scope
}

// records picks the service's answer for qtype for a client of region
// index r, drawing from c, and counts it. It returns the records with the
// picked endpoints' bits.
func (s *service) records(qtype uint16, r int, c *chooser) ([]dns.RR, uint64) {
	p := s.poolFor(qtype, r)
	if p == nil {
		return nil, 0
	}
	var picked [maxPick]*endpoint
	k, ends := p.pick(s.policy, s.maxAnswers, c, &picked)
	rrs := make([]dns.RR, k)
	for i, e := range picked[:k] {
		rrs[i] = e.rr
		e.answers.Inc()
	}
	return rrs, ends
}

// negativeSOA is the zone's SOA for the authority section of a negative
// answer, with its TTL lowered to ttl (RFC 2308 §3).
func (z *zone) negativeSOA(ttl uint32) dns.RR {
	if ttl == z.soa.Hdr.Ttl {
		return z.soa
	}
	soa := *z.soa
	soa.Hdr.Ttl = ttl
	return &soa
}
