package resolver

import (
	"encoding/binary"
	"math"
	"slices"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
	"meridian/placement"
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
	index      int // in config.Services: what the recorder and the identity hash get
	policy     string
	ttl        uint32
	maxAnswers int
	// pools[f] answers family f; nil: the service has no endpoint of it.
	// For the latency policy, byRegion[f][r] answers clients placed in
	// region r (table.regions order) and pools[f] is unused.
	pools    [famCount]*pool
	byRegion [famCount][]*pool
}

// latency reports whether the answer depends on where the client is.
func (s *service) latency() bool { return s.policy == "latency" }

// pool is the set of endpoints one family may answer right now, after
// health, fail-open, failover priority, nearness and the zero-weight rule.
type pool struct {
	ends     []*endpoint
	cum      []uint64 // cumulative weights, cum[len-1] = total
	failOpen bool     // none was up: every endpoint is answered
}

// endpoint is one possible answer with its record pre-built and pre-packed.
type endpoint struct {
	name    string
	bit     uint64 // 1 << the endpoint's index in the service's Endpoints
	weight  uint64
	rr      dns.RR
	wire    []byte // the RR packed with owner 0xC00C (the question name)
	answers prometheus.Counter
}

// compiler builds a service's pools; it carries what every pool needs.
type compiler struct {
	svc     *config.Service
	index   int // of svc in config.Services
	health  Health
	metrics *Metrics
	regions []string // the table's regions, in index order
	locate  func(region string) ([2]float64, bool)
}

// newService compiles s for the health snapshot h.
func (c *compiler) newService() *service {
	s := c.svc
	svc := &service{name: s.Name, index: c.index, policy: s.Policy, ttl: s.TTL, maxAnswers: min(s.MaxAnswers, maxPick)}
	var byFam [famCount][]config.Endpoint
	for _, e := range s.Endpoints {
		byFam[endpointFamily(e)] = append(byFam[endpointFamily(e)], e)
	}
	for f, ends := range byFam {
		if len(ends) == 0 {
			continue
		}
		up, failOpen := c.upEndpoints(ends)
		if !svc.latency() {
			svc.pools[f] = c.newPool(family(f), c.policyFilter(up), failOpen, anyRegion)
			continue
		}
		for _, r := range c.regions {
			svc.byRegion[f] = append(svc.byRegion[f], c.newPool(family(f), c.nearest(up, r), failOpen, r))
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

// upEndpoints keeps the up endpoints, or all of them when none is up and the
// service fails open (none when it does not).
func (c *compiler) upEndpoints(ends []config.Endpoint) ([]config.Endpoint, bool) {
	up := filter(ends, func(e config.Endpoint) bool { return c.health.Up(c.svc.Name, e.Name) })
	if len(up) > 0 {
		return up, false
	}
	if !c.svc.FailsOpen() {
		return nil, false
	}
	return ends, true
}

// policyFilter keeps, for failover, the lowest priority present.
func (c *compiler) policyFilter(up []config.Endpoint) []config.Endpoint {
	if c.svc.Policy != "failover" || len(up) == 0 {
		return up
	}
	best := up[0].Priority
	for _, e := range up {
		best = min(best, e.Priority)
	}
	return filter(up, func(e config.Endpoint) bool { return e.Priority == best })
}

// kmPerRTTms converts great-circle distance to an RTT estimate: light in
// fibre covers about 200 km per ms one way, so 100 km per ms of round trip.
const kmPerRTTms = 100

// nearest keeps the endpoints whose RTT from region is within the
// service's tolerance of the best. The RTT is the one measured from region,
// else estimated from the distance between the regions' locations; an
// endpoint with neither ranks after every endpoint that has one.
func (c *compiler) nearest(up []config.Endpoint, region string) []config.Endpoint {
	const unknown = time.Duration(math.MaxInt64)
	rtts := make([]time.Duration, len(up))
	best := unknown
	for i, e := range up {
		rtts[i] = c.rtt(e, region, unknown)
		best = min(best, rtts[i])
	}
	var out []config.Endpoint
	for i, e := range up {
		if rtts[i] == best || best != unknown && rtts[i] != unknown && c.svc.Tolerance.Within(rtts[i], best) {
			out = append(out, e)
		}
	}
	return out
}

func (c *compiler) rtt(e config.Endpoint, region string, unknown time.Duration) time.Duration {
	if d, ok := c.health.RTT(c.svc.Name, e.Name, region); ok {
		return d
	}
	from, ok1 := c.locate(region)
	to, ok2 := c.locate(e.Region)
	if !ok1 || !ok2 {
		return unknown
	}
	return time.Duration(placement.Distance(from, to) / kmPerRTTms * float64(time.Millisecond))
}

// anyRegion labels the answers of policies that do not place clients.
const anyRegion = "any"

// newPool weights the candidates: positive-weight ones unless none has
// weight, in which case all share equally (Route 53's rule).
func (c *compiler) newPool(f family, candidates []config.Endpoint, failOpen bool, region string) *pool {
	p := &pool{failOpen: failOpen}
	positive := filter(candidates, func(e config.Endpoint) bool { return e.EffectiveWeight() > 0 })
	var total uint64
	for _, e := range candidates {
		w := uint64(e.EffectiveWeight())
		if len(positive) == 0 {
			w = 1
		} else if w == 0 {
			continue
		}
		total += w
		p.ends = append(p.ends, newEndpoint(c.svc, f, e, w, c.metrics.answerCounter(c.svc.Name, e.Name, region)))
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

func newEndpoint(s *config.Service, f family, e config.Endpoint, w uint64, answers prometheus.Counter) *endpoint {
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
	// Endpoint names are unique in a service (config checks), and a service
	// has at most 64 endpoints: the index fits the recorder's bitmask.
	i := slices.IndexFunc(s.Endpoints, func(x config.Endpoint) bool { return x.Name == e.Name })
	return &endpoint{name: e.Name, bit: 1 << uint(i), weight: w, rr: rr, wire: packRR(rr), answers: answers}
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
// how many it chose, with their endpoint bits. Weighted draws come from c;
// multivalue shuffles with c's random source. It does not allocate.
func (p *pool) pick(policy string, k int, c *chooser, out *[maxPick]*endpoint) (int, uint64) {
	n := len(p.ends)
	if n == 0 {
		return 0, 0
	}
	switch {
	case policy == "multivalue":
		k = p.shuffle(k, c.rnd, out)
	case n == 1:
		out[0], k = p.ends[0], 1 // nothing to draw
	case k == 1:
		out[0] = p.ends[p.draw(c.below(0, p.cum[n-1]))]
	default:
		k = p.drawWithoutReplacement(min(k, n), c, out)
	}
	var bits uint64
	for _, e := range out[:k] {
		bits |= e.bit
	}
	return k, bits
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

// drawWithoutReplacement draws k distinct endpoints one after the other,
// each by its weight among those not drawn yet; draw i is c.below(i, ...).
func (p *pool) drawWithoutReplacement(k int, c *chooser, out *[maxPick]*endpoint) int {
	var used [maxPick]bool
	remaining := p.cum[len(p.cum)-1]
	for i := 0; i < k; i++ {
		u := c.below(i, remaining)
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

// familyFor returns the family answering qtype at the service, or false
// (NODATA). A CNAME service answers its CNAME whatever the type.
func (s *service) familyFor(qtype uint16) (family, bool) {
	has := func(f family) bool { return s.pools[f] != nil || s.byRegion[f] != nil }
	switch {
	case has(famCNAME):
		return famCNAME, true
	case qtype == dns.TypeA || qtype == dns.TypeANY && has(famA):
		return famA, has(famA)
	case qtype == dns.TypeAAAA || qtype == dns.TypeANY:
		return famAAAA, has(famAAAA)
	}
	return 0, false
}

// poolFor returns the pool answering qtype for a client placed in region
// index r (ignored unless the policy is latency), or nil (NODATA).
func (s *service) poolFor(qtype uint16, r int) *pool {
	f, ok := s.familyFor(qtype)
	switch {
	case !ok:
		return nil
	case s.latency():
		return s.byRegion[f][r]
	}
	return s.pools[f]
}
