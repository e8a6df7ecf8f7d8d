package resolver

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
	"meridian/placement"
)

// Health is the resolver's view of endpoint health. The resolver consults it
// only while compiling its answer table (after a configuration or health
// change), never per query. Implementations must be immutable snapshots or
// otherwise safe for concurrent use, and must not block.
type Health interface {
	// Up reports whether the endpoint named endpoint of the service named
	// service (a canonical FQDN) may be answered.
	Up(service, endpoint string) bool
	// RTT reports the round-trip time measured from region to the
	// endpoint, if any node of the region measured it.
	RTT(service, endpoint, region string) (time.Duration, bool)
}

// AllUp is the Health of a node without probes: every endpoint is up and
// no RTT is known.
type AllUp struct{}

// Up always reports true.
func (AllUp) Up(string, string) bool { return true }

// RTT always reports none.
func (AllUp) RTT(string, string, string) (time.Duration, bool) { return 0, false }

// table is everything a query needs, compiled from one configuration and one
// health snapshot. It is immutable once built and shared by all queries.
type table struct {
	names     map[string]*node // canonical FQDN → node
	zones     []*zone          // longest origin first
	cuts      []*cut           // delegations inside our zones (delegation.go)
	nsid      []byte
	udp       uint16
	health    Health
	placer    *placement.Placer
	placed    *[3]prometheus.Counter // by placement.Rule
	regions   []string               // sorted region names: the index of latency pools
	regionIdx map[string]int         // region name → index in regions
	lowDisc   bool                   // skew.low_discrepancy: weighted picks by Weyl sequence
	now       func() time.Time       // the clock low-discrepancy slots are read from
	rec       AnswerRecorder         // receives the answers sent from this table; nil: off
}

// zone holds a zone's apex records.
type zone struct {
	origin  string
	soa     *dns.SOA
	ns      []dns.RR
	negTTL  uint32 // min(SOA TTL, SOA minimum), RFC 2308
	soaWire []byte // the SOA packed, owner and TTL patched per response
	wireLen int    // length of the origin as a wire name
}

// node is one owner name: static RRsets, a steered service, or neither
// (an empty non-terminal: the name exists but has no data).
type node struct {
	name    string
	zone    *zone
	rrsets  map[uint16][]dns.RR
	wire    map[uint16]wireSet // rrsets pre-packed for the fast path
	service *service
}

// wireSet is an RRset packed with every owner a pointer to the question.
type wireSet struct {
	count int
	rrs   []byte
}

// compile builds the answer table for cfg under health h, placing clients with p.
func compile(cfg *config.Config, h Health, m *Metrics, p *placement.Placer) (*table, error) {
	t := &table{names: map[string]*node{}, udp: uint16(cfg.DNS.UDPSize), health: h, placer: p,
		regionIdx: map[string]int{}, placed: &m.placed, lowDisc: cfg.Skew.LowDiscrepancy, now: time.Now}
	for name := range cfg.Regions {
		t.regions = append(t.regions, name)
	}
	slices.Sort(t.regions)
	for i, name := range t.regions {
		t.regionIdx[name] = i
	}
	locate := locator(cfg)
	if cfg.DNS.NSID {
		t.nsid = []byte(cfg.Node.Name)
	}
	for i := range cfg.Zones {
		z := newZone(&cfg.Zones[i])
		t.zones = append(t.zones, z)
		t.addZone(z, &cfg.Zones[i])
	}
	slices.SortFunc(t.zones, func(a, b *zone) int { return len(b.origin) - len(a.origin) })
	t.findCuts()
	for _, n := range t.names {
		n.packWire()
	}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		z := t.zoneOf(s.Name)
		if z == nil {
			return nil, fmt.Errorf("resolver: service %s lies in no zone", s.Name)
		}
		if c := t.cutOf(s.Name); c != nil {
			return nil, fmt.Errorf("resolver: service %s lies in the delegation of %s", s.Name, c.name)
		}
		c := &compiler{svc: s, index: i, health: h, metrics: m, regions: t.regions, locate: locate}
		t.node(s.Name, z).service = c.newService()
	}
	return t, nil
}

// locator returns a function giving a region's location, if configured.
func locator(cfg *config.Config) func(region string) ([2]float64, bool) {
	return func(region string) ([2]float64, bool) {
		r, ok := cfg.Regions[region]
		if !ok || !r.HasLocation() {
			return [2]float64{}, false
		}
		return [2]float64{r.Location[0], r.Location[1]}, true
	}
}

func newZone(zc *config.Zone) *zone {
	hdr := dns.RR_Header{Name: zc.Origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: zc.TTL}
	soa := &dns.SOA{Hdr: hdr, Ns: zc.NS[0], Mbox: zc.Hostmaster, Serial: zoneSerial(zc),
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: zc.TTL}
	z := &zone{origin: zc.Origin, soa: soa, negTTL: min(soa.Hdr.Ttl, soa.Minttl),
		soaWire: packRR(soa), wireLen: wireNameLen(zc.Origin)}
	for _, ns := range zc.NS {
		z.ns = append(z.ns, &dns.NS{Hdr: dns.RR_Header{Name: zc.Origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: zc.TTL}, Ns: ns})
	}
	return z
}

// zoneSerial is the configured serial, or one derived from the zone's
// contents so that every node with the same configuration agrees on it.
func zoneSerial(zc *config.Zone) uint32 {
	if zc.Serial != 0 {
		return zc.Serial
	}
	h := fnv.New32a()
	fmt.Fprint(h, zc.Origin, zc.NS, zc.Hostmaster, zc.TTL)
	for _, rr := range zc.RRs {
		fmt.Fprint(h, rr.String())
	}
	return max(h.Sum32()>>1, 1)
}

func (t *table) addZone(z *zone, zc *config.Zone) {
	apex := t.node(z.origin, z)
	apex.rrsets[dns.TypeSOA] = []dns.RR{z.soa}
	apex.rrsets[dns.TypeNS] = z.ns
	for _, rr := range zc.RRs {
		n := t.node(rr.Header().Name, z)
		n.rrsets[rr.Header().Rrtype] = append(n.rrsets[rr.Header().Rrtype], rr)
	}
}

// node returns the node for name, creating it and every empty non-terminal
// between it and the zone apex.
func (t *table) node(name string, z *zone) *node {
	if n, ok := t.names[name]; ok {
		return n
	}
	n := &node{name: name, zone: z, rrsets: map[uint16][]dns.RR{}}
	t.names[name] = n
	if name != z.origin {
		if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
			t.node(name[i+1:], z)
		}
	}
	return n
}

// packWire packs every static RRset of n for the fast path.
func (n *node) packWire() {
	n.wire = make(map[uint16]wireSet, len(n.rrsets))
	for t, rrs := range n.rrsets {
		var ws wireSet
		for _, rr := range rrs {
			ws.rrs = append(ws.rrs, packRR(rr)...)
			ws.count++
		}
		n.wire[t] = ws
	}
}

// wireNameLen is the length of a canonical name without escapes in wire form.
func wireNameLen(name string) int {
	if name == "." {
		return 1
	}
	return len(name) + 1
}

// zoneOf returns the zone that holds name (canonical), or nil.
func (t *table) zoneOf(name string) *zone {
	for _, z := range t.zones {
		if config.InZone(name, z.origin) {
			return z
		}
	}
	return nil
}

// chooser returns what a query from source, whose answer so far is cached
// under the client subnet ecs, draws s's weighted picks with: the Weyl
// sequence of its cache identity when low discrepancy is on (reading the
// clock once, at the first draw), else rnd. multivalue always shuffles at
// random.
func (t *table) chooser(s *service, source netip.Addr, ecs netip.Prefix, rnd rand64) chooser {
	if !t.lowDisc || s.policy == "multivalue" {
		return chooser{rnd: rnd}
	}
	return chooser{rnd: rnd, weyl: true, now: t.now, source: source, service: s.index, ecs: ecs, ttl: s.ttl}
}
