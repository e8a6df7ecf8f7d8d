package resolver

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// fastAnswer answers the common query straight from and into wire bytes,
// without allocating: one question of class IN, no EDNS options other than
// a cookie or padding, answered by a service pick, a static RRset, NODATA or
// NXDOMAIN that fits the UDP limit. It returns the response length with the
// query type and rcode for metrics, or n = 0 when the general path must
// answer. Its answers equal the general path's (see fuzz_test.go). snt is
// reset and notes the service answer for the recorder; it is only
// meaningful when n > 0.
func (t *table) fastAnswer(q, out []byte, source netip.Addr, rnd rand64, snt *sent) (n int, qtype uint16, rcode int) {
	snt.reset(t, source)
	qd, ok := parseQuery(q)
	if !ok {
		return 0, 0, 0
	}
	qd.source, qd.client = source, source
	if qd.ecs.present && qd.ecs.source > 0 {
		qd.client = qd.ecs.addr
	}
	var lower [256]byte
	name := lowerName(q[headerLen:qd.end-4], lower[:])
	if name == nil {
		return 0, 0, 0
	}
	nd := t.names[string(name)]
	z := t.zoneOfWire(nd, name)
	if z == nil || qd.qtype == dns.TypeANY || qd.qtype == dns.TypeAXFR || qd.qtype == dns.TypeIXFR || t.delegated(name) {
		return 0, 0, 0
	}
	w := wireWriter{out: out, limit: qd.limit(t.udp)}
	w.header(q, qd)
	if !w.question(q[headerLen:qd.end]) {
		return 0, 0, 0
	}
	rcode, ok = t.fastSections(&w, nd, z, &qd, rnd, snt)
	if !ok || !w.opt(&qd, t.udp) || w.overflow {
		return 0, 0, 0
	}
	out[3] |= byte(rcode)
	snt.ecs = qd.cacheSubnet()
	return w.n, qd.qtype, rcode
}

// fastSections writes the answer or the negative SOA. ok is false when the
// general path must answer (a CNAME to chase).
func (t *table) fastSections(w *wireWriter, nd *node, z *zone, qd *query, rnd rand64, snt *sent) (rcode int, ok bool) {
	if nd == nil {
		w.negative(z, qd, z.negTTL)
		return dns.RcodeNameError, true
	}
	if s := nd.service; s != nil && nd.rrsets[qd.qtype] == nil {
		if s.pools[famCNAME] != nil && qd.qtype != dns.TypeCNAME {
			return 0, false
		}
		r, scope := t.place(s, qd.client)
		qd.scope = max(qd.scope, scope)
		ch := t.chooser(s, qd.source, qd.cacheSubnet(), rnd)
		snt.add(s, w.service(s, r, z, qd, &ch))
		return dns.RcodeSuccess, true
	}
	if nd.rrsets[dns.TypeCNAME] != nil && qd.qtype != dns.TypeCNAME {
		return 0, false
	}
	set, found := nd.wire[qd.qtype]
	if !found {
		w.negative(z, qd, z.negTTL)
		return dns.RcodeSuccess, true
	}
	w.records(set.count, set.rrs)
	return dns.RcodeSuccess, true
}

// query is what parseQuery learns of a query packet.
type query struct {
	end    int // offset after the question
	qtype  uint16
	edns   bool
	udp    uint16 // the client's EDNS payload size
	rd, cd bool
	ecs    ecsOption
	source netip.Addr // the packet's source: the resolver
	client netip.Addr // the ECS address, else the source
	scope  uint8      // the ECS scope the answer depended on
}

// cacheSubnet is the client subnet the answer so far is cached under.
func (qd *query) cacheSubnet() netip.Prefix {
	if !qd.ecs.present {
		return netip.Prefix{}
	}
	return cacheSubnet(qd.ecs.addr, qd.ecs.source, qd.scope)
}

// ecsOption is a client-subnet option as the query carried it.
type ecsOption struct {
	present bool
	family  uint16
	source  uint8
	addr    netip.Addr
	raw     []byte // the option's address bytes, echoed back
}

// limit is the largest response to send to this query over UDP.
func (qd query) limit(ours uint16) int {
	if !qd.edns {
		return dns.MinMsgSize
	}
	return max(dns.MinMsgSize, int(min(qd.udp, ours)))
}

// parseQuery accepts only what the fast path answers: a standard query with
// one uncompressed IN question and at most one plain OPT record.
func parseQuery(q []byte) (query, bool) {
	if len(q) < headerLen+5 || q[2]&0xF8 != 0 || be16(q[4:]) != 1 || be16(q[6:]) != 0 || be16(q[8:]) != 0 {
		return query{}, false
	}
	i := headerLen
	for i < len(q) && q[i] != 0 {
		if q[i] > 63 {
			return query{}, false
		}
		i += int(q[i]) + 1
	}
	if i+5 > len(q) || i-headerLen+1 > 255 || be16(q[i+3:]) != dns.ClassINET {
		return query{}, false
	}
	qd := query{end: i + 5, qtype: be16(q[i+1:]), rd: q[2]&1 != 0, cd: q[3]&0x10 != 0}
	switch be16(q[10:]) {
	case 0:
		return qd, qd.end == len(q)
	case 1:
		return parseOPT(q, qd)
	}
	return query{}, false
}

// parseOPT accepts an OPT record of version 0 whose options are a valid
// client subnet, a cookie or padding (the latter two an authoritative
// server may ignore). Anything else is left to the general path.
func parseOPT(q []byte, qd query) (query, bool) {
	o := q[qd.end:]
	if len(o) < 11 || o[0] != 0 || be16(o[1:]) != dns.TypeOPT || o[6] != 0 || int(be16(o[9:]))+11 != len(o) {
		return query{}, false
	}
	opts := o[11:]
	for len(opts) >= 4 {
		code, l := be16(opts), int(be16(opts[2:]))
		if l+4 > len(opts) {
			return query{}, false
		}
		switch code {
		case dns.EDNS0COOKIE, dns.EDNS0PADDING:
		case dns.EDNS0SUBNET:
			if qd.ecs.present || !parseECS(opts[4:4+l], &qd.ecs) {
				return query{}, false
			}
		default:
			return query{}, false
		}
		opts = opts[4+l:]
	}
	qd.edns, qd.udp = true, be16(o[3:])
	return qd, len(opts) == 0 && o[5] == 0
}

// parseECS reads a client-subnet option's value, accepting only what RFC
// 7871 §7.1.2 allows: a known family, scope 0, exactly the address bytes
// the source prefix needs and no bits set beyond it.
func parseECS(v []byte, e *ecsOption) bool {
	if len(v) < 4 {
		return false
	}
	e.family, e.source = be16(v), v[2]
	var a [16]byte
	size := 0
	switch e.family {
	case 1:
		size = 4
	case 2:
		size = 16
	}
	need := (int(e.source) + 7) / 8
	if size == 0 || int(e.source) > 8*size || v[3] != 0 || len(v)-4 != need {
		return false
	}
	e.raw = v[4:]
	copy(a[:], e.raw)
	if need > 0 && e.source%8 != 0 && e.raw[need-1]&(0xFF>>(e.source%8)) != 0 {
		return false
	}
	e.present = true
	if e.family == 1 {
		e.addr = netip.AddrFrom4([4]byte(a[:4]))
	} else {
		e.addr = netip.AddrFrom16(a).Unmap()
	}
	return true
}

// lowerName writes the wire name as a lower-case presentation name
// ("www.example.") into buf and returns it.
func lowerName(wire, buf []byte) []byte {
	n := 0
	for i := 0; wire[i] != 0; {
		l := int(wire[i])
		for _, c := range wire[i+1 : i+1+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c == '.' || c == '\\' || c < '!' || c > '~' {
				return nil // escaped in presentation: the general path answers
			}
			buf[n] = c
			n++
		}
		buf[n] = '.'
		n++
		i += l + 1
	}
	if n == 0 {
		buf[0], n = '.', 1
	}
	return buf[:n]
}

// zoneOfWire returns the zone of the name, from its node when it has one.
func (t *table) zoneOfWire(nd *node, name []byte) *zone {
	if nd != nil {
		return nd.zone
	}
	for _, z := range t.zones {
		if len(name) >= len(z.origin) && string(name[len(name)-len(z.origin):]) == z.origin &&
			(len(name) == len(z.origin) || name[len(name)-len(z.origin)-1] == '.') {
			return z
		}
	}
	return nil
}

// wireWriter appends response sections to out, noting when they would
// pass the size limit.
type wireWriter struct {
	out      []byte
	n        int
	limit    int
	overflow bool
}

func (w *wireWriter) put(b []byte) {
	if w.n+len(b) > w.limit {
		w.overflow = true
		return
	}
	w.n += copy(w.out[w.n:], b)
}

// header writes the response header: the query's ID, QR, AA, RD and CD.
func (w *wireWriter) header(q []byte, qd query) {
	copy(w.out[:2], q[:2])
	w.out[2] = 0x84 | q[2]&0x01 // QR, AA, RD copied
	w.out[3] = q[3] & 0x10      // CD copied; RA, AD and rcode clear
	binary.BigEndian.PutUint32(w.out[4:], 1<<16)
	binary.BigEndian.PutUint32(w.out[8:], 0)
	w.n = headerLen
}

// question copies the question as the client sent it (0x20 case preserved).
func (w *wireWriter) question(qsec []byte) bool {
	w.put(qsec)
	return !w.overflow
}

func (w *wireWriter) addCount(section int, k int) {
	off := 6 + 2*section
	binary.BigEndian.PutUint16(w.out[off:], be16(w.out[off:])+uint16(k))
}

// records writes k pre-packed answer records.
func (w *wireWriter) records(k int, rrs []byte) {
	w.put(rrs)
	w.addCount(0, k)
}

// service writes the service's pick for the query type, drawn from c, or
// NODATA. It returns the bits of the endpoints written (0 for NODATA).
func (w *wireWriter) service(s *service, region int, z *zone, qd *query, c *chooser) uint64 {
	p := s.poolFor(qd.qtype, region)
	if p == nil || len(p.ends) == 0 {
		w.negative(z, qd, min(z.negTTL, s.ttl))
		return 0
	}
	var picked [maxPick]*endpoint
	k, ends := p.pick(s.policy, s.maxAnswers, c, &picked)
	for _, e := range picked[:k] {
		w.put(e.wire)
	}
	w.addCount(0, k)
	if !w.overflow {
		for _, e := range picked[:k] {
			e.answers.Inc()
		}
	}
	return ends
}

// negative writes the zone's SOA in the authority section with the TTL
// given, its owner compressed to the apex's position inside the question.
func (w *wireWriter) negative(z *zone, qd *query, ttl uint32) {
	apex := headerLen + (qd.end - 4 - headerLen) - z.wireLen
	start := w.n
	w.put(z.soaWire)
	if w.overflow {
		return
	}
	binary.BigEndian.PutUint16(w.out[start:], 0xC000|uint16(apex))
	binary.BigEndian.PutUint32(w.out[start+6:], ttl)
	w.addCount(1, 1)
}

// opt writes our OPT record when the query had one, echoing its client
// subnet option with the scope the answer used.
func (w *wireWriter) opt(qd *query, udp uint16) bool {
	if !qd.edns {
		return true
	}
	var o [11 + 8]byte
	binary.BigEndian.PutUint16(o[1:], dns.TypeOPT)
	binary.BigEndian.PutUint16(o[3:], udp)
	n := 11
	if e := qd.ecs; e.present {
		binary.BigEndian.PutUint16(o[9:], uint16(8+len(e.raw)))
		binary.BigEndian.PutUint16(o[11:], dns.EDNS0SUBNET)
		binary.BigEndian.PutUint16(o[13:], uint16(4+len(e.raw)))
		binary.BigEndian.PutUint16(o[15:], e.family)
		o[17], o[18], n = e.source, qd.scope, 19
	}
	w.put(o[:n])
	if qd.ecs.present {
		w.put(qd.ecs.raw)
	}
	w.addCount(2, 1)
	return !w.overflow
}
