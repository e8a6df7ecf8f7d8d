package resolver

import "net/netip"

// AnswerRecorder receives every response the server actually sends for a
// steered service name. RecordAnswer is called on the answer path,
// concurrently: it must not block, lock or allocate.
//
// service is the index of the service in config.Services of the
// configuration that answered (see Server.UpdateWithRecorder); source the
// packet's source address (the resolver); ecs the client subnet the answer
// is cached under: the ECS address masked to the shorter of the query's
// source prefix and the scope returned (RFC 7871 §7.3.1), or the zero
// Prefix when the query had no ECS option or either length is 0; endpoints
// a bitmask of the answered endpoints' indexes in the service's Endpoints
// (config allows at most 64); ttl the TTL sent.
//
// What is recorded: each response written without error, over UDP (fast and
// general path) or TCP, once per steered service whose endpoints (A, AAAA
// or CNAME records) it carries — a CNAME chain through two services records
// both. NXDOMAIN, NODATA, REFUSED, errors and static records are not
// recorded. Nor are UDP responses sent with TC set: a client discards a
// truncated response (RFC 2181 §9) and asks again over TCP, whose full
// answer is the one it uses and the one recorded; recording the UDP one too
// would count one decision twice, and its partial answer was never used.
type AnswerRecorder interface {
	RecordAnswer(service int, source netip.Addr, ecs netip.Prefix, endpoints uint64, ttl uint32)
}

// maxRecorded bounds the services one response records: the query's name
// and every name of a CNAME chain it follows.
const maxRecorded = maxCNAMEChase + 1

// sent is what one response carries for the recorder, noted while it is
// built and recorded once it is written. A serving goroutine keeps one and
// reuses it for every query.
type sent struct {
	rec    AnswerRecorder // the answering table's recorder; nil: off
	source netip.Addr
	ecs    netip.Prefix
	n      int
	svcs   [maxRecorded]sentService
}

// sentService is one steered service's answer in a response.
type sentService struct {
	index int    // in config.Services
	ends  uint64 // endpoint bits
	ttl   uint32
}

// reset starts a new response answered by t for source.
func (s *sent) reset(t *table, source netip.Addr) {
	s.rec, s.source, s.ecs, s.n = t.rec, source, netip.Prefix{}, 0
}

// add notes the answer of service svc with the endpoint bits ends.
func (s *sent) add(svc *service, ends uint64) {
	if s.n < len(s.svcs) && ends != 0 {
		s.svcs[s.n] = sentService{index: svc.index, ends: ends, ttl: svc.ttl}
		s.n++
	}
}

// record hands what the response carried to the recorder, if there is one.
// Call it only once the response has been written.
func (s *sent) record() {
	if s.rec == nil {
		return
	}
	for i := range s.n {
		a := &s.svcs[i]
		s.rec.RecordAnswer(a.index, s.source, s.ecs, a.ends, a.ttl)
	}
}

// cacheSubnet is the client subnet a resolver caches an answer under: the
// ECS address masked to min(source prefix, scope) (RFC 7871 §7.3.1), or the
// zero Prefix when that length is 0 or the address is invalid.
func cacheSubnet(addr netip.Addr, source, scope uint8) netip.Prefix {
	bits := int(min(source, scope))
	if bits == 0 || !addr.IsValid() {
		return netip.Prefix{}
	}
	p, err := addr.Prefix(min(bits, addr.BitLen()))
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
