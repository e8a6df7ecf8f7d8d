package resolver

import (
	"encoding/binary"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
)

// maxPick bounds how many endpoints one answer may carry (config.max_answers ≤ 64).
const maxPick = 64

// family indexes a service's answer pools by the record type they answer.
type family int

const (
	famA family = iota
	famAAAA
	famCNAME
	famCount
)

var familyType = [famCount]uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME}

// service is a steered name compiled for one health snapshot.
type service struct {
	name       string
	policy     string
	ttl        uint32
	maxAnswers int
	pools      [famCount]*pool // nil: the service has no endpoint of that family
	nodataTTL  uint32          // negative TTL when a family has nothing to answer
}

// pool is the set of endpoints one family may answer right now, after
// health, fail-open, failover priority and the zero-weight rule were applied.
type pool struct {
	ends     []*endpoint
	cum      []uint64 // cumulative weights, cum[len-1] = total
	failOpen bool     // none was up: every endpoint is answered
}

// endpoint is one possible answer with its record pre-built and pre-packed.
type endpoint struct {
	name    string
	weight  uint64
	rr      dns.RR
	wire    []byte // the RR packed with owner 0xC00C (the question name)
	answers prometheus.Counter
}

// newService compiles s for the health snapshot h.
func newService(s *config.Service, h Health, m *Metrics) *service {
	svc := &service{name: s.Name, policy: s.Policy, ttl: s.TTL, maxAnswers: min(s.MaxAnswers, maxPick)}
	var byFam [famCount][]config.Endpoint
	for _, e := range s.Endpoints {
		byFam[endpointFamily(e)] = append(byFam[endpointFamily(e)], e)
	}
	for f, ends := range byFam {
		if len(ends) > 0 {
			svc.pools[f] = newPool(s, family(f), ends, h, m)
		}
	}
	return svc
}

func endpointFamily(e config.Endpoint) family {
	switch {
	case e.CNAME != "":
		return famCNAME
	case e.Addr.Is4():
		return famA
	default:
		return famAAAA
	}
}

// newPool keeps the endpoints that may be answered: the up ones (all of them
// when none is up and the service fails open), for failover only the lowest
// priority, and of those the positive-weight ones unless none has weight.
func newPool(s *config.Service, f family, ends []config.Endpoint, h Health, m *Metrics) *pool {
	p := &pool{}
	up := filter(ends, func(e config.Endpoint) bool { return h.Up(s.Name, e.Name) })
	if len(up) == 0 {
		if !s.FailsOpen() {
			return p
		}
		up, p.failOpen = ends, true
	}
	if s.Policy == "failover" {
		best := up[0].Priority
		for _, e := range up {
			best = min(best, e.Priority)
		}
		up = filter(up, func(e config.Endpoint) bool { return e.Priority == best })
	}
	positive := filter(up, func(e config.Endpoint) bool { return e.EffectiveWeight() > 0 })
	var total uint64
	for _, e := range up {
		w := uint64(e.EffectiveWeight())
		if len(positive) == 0 {
			w = 1 // Route 53: zero-weight endpoints share equally when no other is up
		} else if w == 0 {
			continue
		}
		total += w
		p.ends = append(p.ends, newEndpoint(s, f, e, w, m))
		p.cum = append(p.cum, total)
	}
	return p
}

func filter(ends []config.Endpoint, keep func(config.Endpoint) bool) []config.Endpoint {
	var out []config.Endpoint
	for _, e := range ends {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func newEndpoint(s *config.Service, f family, e config.Endpoint, w uint64, m *Metrics) *endpoint {
	hdr := dns.RR_Header{Name: s.Name, Rrtype: familyType[f], Class: dns.ClassINET, Ttl: s.TTL}
	var rr dns.RR
	switch f {
	case famA:
		rr = &dns.A{Hdr: hdr, A: e.Addr.AsSlice()}
	case famAAAA:
		rr = &dns.AAAA{Hdr: hdr, AAAA: e.Addr.AsSlice()}
	default:
		rr = &dns.CNAME{Hdr: hdr, Target: e.CNAME}
	}
	return &endpoint{name: e.Name, weight: w, rr: rr, wire: packRR(rr), answers: m.answerCounter(s.Name, e.Name)}
}

// packRR packs rr uncompressed, with its owner replaced by a pointer to
// offset 12: the question name in every response.
func packRR(rr dns.RR) []byte {
	buf := make([]byte, dns.Len(rr)+16)
	n, err := dns.PackRR(dns.Copy(rr), buf, 0, nil, false) // PackRR sets Rdlength: never on a shared record
	if err != nil {
		panic("resolver: packing a validated record: " + err.Error())
	}
	out := binary.BigEndian.AppendUint16(nil, 0xC00C)
	return append(out, buf[nameLen(buf):n]...)
}

// nameLen is the length of the uncompressed wire name at the start of b.
func nameLen(b []byte) int {
	i := 0
	for i < len(b) && b[i] != 0 {
		i += int(b[i]) + 1
	}
	return i + 1
}

// rand64 is a source of uniform random numbers. It must be safe for the
// goroutine that calls it; the server's default is math/rand/v2.Uint64.
type rand64 func() uint64

// pick chooses up to k endpoints by the pool's policy into out and returns
// how many it chose. It does not allocate.
func (p *pool) pick(policy string, k int, rnd rand64, out *[maxPick]*endpoint) int {
	n := len(p.ends)
	if n == 0 {
		return 0
	}
	if policy == "multivalue" {
		return p.shuffle(k, rnd, out)
	}
	if k == 1 || n == 1 {
		out[0] = p.ends[p.draw(rnd()%p.cum[n-1])]
		return 1
	}
	return p.drawWithoutReplacement(min(k, n), rnd, out)
}

// draw returns the index whose cumulative-weight interval holds u.
func (p *pool) draw(u uint64) int {
	lo, hi := 0, len(p.cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if p.cum[mid] > u {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

func (p *pool) drawWithoutReplacement(k int, rnd rand64, out *[maxPick]*endpoint) int {
	var used [maxPick]bool
	remaining := p.cum[len(p.cum)-1]
	for i := 0; i < k; i++ {
		u := rnd() % remaining
		for j, e := range p.ends {
			if used[j] {
				continue
			}
			if u < e.weight {
				used[j], out[i] = true, e
				remaining -= e.weight
				break
			}
			u -= e.weight
		}
	}
	return k
}

// shuffle picks k of the pool's endpoints uniformly, in random order.
func (p *pool) shuffle(k int, rnd rand64, out *[maxPick]*endpoint) int {
	n := copy(out[:], p.ends)
	for i := n - 1; i > 0; i-- {
		j := int(rnd() % uint64(i+1))
		out[i], out[j] = out[j], out[i]
	}
	return min(k, n)
}

// poolFor returns the pool answering qtype at the service, or nil (NODATA).
// A CNAME service answers its CNAME whatever the type.
func (s *service) poolFor(qtype uint16) *pool {
	if s.pools[famCNAME] != nil {
		return s.pools[famCNAME]
	}
	switch qtype {
	case dns.TypeA:
		return s.pools[famA]
	case dns.TypeAAAA:
		return s.pools[famAAAA]
	case dns.TypeANY:
		if s.pools[famA] != nil {
			return s.pools[famA]
		}
		return s.pools[famAAAA]
	}
	return nil
}
