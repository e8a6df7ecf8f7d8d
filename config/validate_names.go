package config

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

func (v *validator) zones() {
	seen := map[string]int{}
	for i := range v.cfg.Zones {
		z := &v.cfg.Zones[i]
		key := fmt.Sprintf("zones[%d]", i)
		if !v.domainName(key+".origin", z.Origin) {
			continue
		}
		if j, dup := seen[z.Origin]; dup {
			v.errorf(key+".origin", "%q is already the origin of zones[%d]", z.Origin, j)
			continue
		}
		seen[z.Origin] = i
		v.zone(key, z)
	}
	v.nestedZones()
}

func (v *validator) zone(key string, z *Zone) {
	v.ttl(key+".ttl", z.TTL)
	if len(z.NS) == 0 {
		v.errorf(key+".ns", "needs at least one name server")
	}
	for j, ns := range z.NS {
		v.domainName(fmt.Sprintf("%s.ns[%d]", key, j), ns)
	}
	v.domainName(key+".hostmaster", z.Hostmaster)
	if z.Records != "" {
		z.Records = v.path(z.Records)
		z.RRs = v.zoneFile(key+".records", z)
	}
}

// nestedZones rejects a zone inside another: every name then belongs to
// exactly one zone, and no delegation between our own zones is needed.
func (v *validator) nestedZones() {
	zs := v.cfg.Zones
	for i := range zs {
		for j := range zs {
			if i != j && zs[i].Origin != "" && zs[i].Origin != zs[j].Origin && InZone(zs[i].Origin, zs[j].Origin) {
				v.errorf(fmt.Sprintf("zones[%d].origin", i), "%q lies inside zones[%d] %q: nested zones are not supported", zs[i].Origin, j, zs[j].Origin)
			}
		}
	}
}

// zoneFile reads static records in RFC 1035 syntax. Errors name file:line.
// SOA records and NS records at the apex are not allowed: they come from
// the [[zones]] table. NS records below the apex delegate their name.
func (v *validator) zoneFile(key string, z *Zone) []dns.RR {
	f, err := os.Open(z.Records)
	if err != nil {
		v.errorf(key, "%v", err)
		return nil
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, z.Origin, z.Records)
	zp.SetDefaultTTL(z.TTL)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if msg := staticRecordProblem(rr, z.Origin); msg != "" {
			v.errorf(key, "%s: %s", z.Records, msg)
			continue
		}
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		v.errorf(key, "%s", zoneFileError(err))
	}
	cuts := delegations(rrs, z.Origin)
	for _, rr := range rrs {
		if msg := occludedProblem(rr, cuts); msg != "" {
			v.errorf(key, "%s: %s", z.Records, msg)
		}
	}
	return rrs
}

// delegations returns the names below origin that rrs give an NS set:
// the zone cuts, where the zone's servers refer to other servers.
func delegations(rrs []dns.RR, origin string) []string {
	var cuts []string
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeNS && h.Name != origin && !slices.Contains(cuts, h.Name) {
			cuts = append(cuts, h.Name)
		}
	}
	return cuts
}

// occludedProblem rejects data below a delegation that no one would see:
// there the zone holds only the cut's NS (and DS) set and glue addresses.
func occludedProblem(rr dns.RR, cuts []string) string {
	h := rr.Header()
	for _, cut := range cuts {
		switch {
		case !InZone(h.Name, cut):
		case h.Name == cut && (h.Rrtype == dns.TypeNS || h.Rrtype == dns.TypeDS):
		case h.Rrtype == dns.TypeA || h.Rrtype == dns.TypeAAAA:
		default:
			return fmt.Sprintf("%s %s lies in the delegation of %s: only NS and DS at the cut and glue (A, AAAA) may be there",
				h.Name, dns.TypeToString[h.Rrtype], cut)
		}
	}
	return ""
}

// zoneFilePos matches miekg/dns's `FILE: dns: MSG: "TOKEN" at line: L:C`.
var zoneFilePos = regexp.MustCompile(`^(.+): dns: (.+) at line: (\d+):(\d+)$`)

// zoneFileError writes a zone file syntax error as `FILE:LINE:COL: MSG`.
func zoneFileError(err error) string {
	return zoneFilePos.ReplaceAllString(err.Error(), "$1:$3:$4: $2")
}

func staticRecordProblem(rr dns.RR, origin string) string {
	h := rr.Header()
	switch {
	case !InZone(strings.ToLower(h.Name), origin):
		return fmt.Sprintf("%s is outside the zone %s", h.Name, origin)
	case h.Rrtype == dns.TypeSOA || h.Rrtype == dns.TypeNS && strings.EqualFold(h.Name, origin):
		return fmt.Sprintf("%s %s: SOA and NS come from the [[zones]] table", h.Name, dns.TypeToString[h.Rrtype])
	case h.Class != dns.ClassINET:
		return fmt.Sprintf("%s: only class IN is served", h.Name)
	}
	return ""
}

func (v *validator) services() {
	seen := map[string]int{}
	for i := range v.cfg.Services {
		s := &v.cfg.Services[i]
		key := fmt.Sprintf("services[%d]", i)
		s.Zone = -1 // until serviceZone finds it
		if v.domainName(key+".name", s.Name) {
			if j, dup := seen[s.Name]; dup {
				v.errorf(key+".name", "%q is already the name of services[%d]", s.Name, j)
			}
			seen[s.Name] = i
			v.serviceZone(key, s)
		}
		v.service(key, s)
	}
}

// serviceZone finds the zone holding the service and checks that no static
// record shares its name.
func (v *validator) serviceZone(key string, s *Service) {
	s.Zone = -1
	for i, z := range v.cfg.Zones {
		if z.Origin != "" && InZone(s.Name, z.Origin) {
			s.Zone = i
		}
	}
	if s.Zone < 0 {
		v.errorf(key+".name", "%q is not inside any zone", s.Name)
		return
	}
	z := v.cfg.Zones[s.Zone]
	for _, cut := range delegations(z.RRs, z.Origin) {
		if InZone(s.Name, cut) {
			v.errorf(key+".name", "%q lies in the delegation of %s in %s: the zone refers it to other servers", s.Name, cut, z.Records)
			return
		}
	}
	for _, rr := range v.cfg.Zones[s.Zone].RRs {
		if rr.Header().Name == s.Name {
			v.errorf(key+".name", "%q also has static records in %s", s.Name, v.cfg.Zones[s.Zone].Records)
			return
		}
	}
}

func (v *validator) service(key string, s *Service) {
	if !slices.Contains(Policies, s.Policy) {
		v.errorf(key+".policy", "%q is not one of %s", s.Policy, strings.Join(Policies, ", "))
	}
	v.ttl(key+".ttl", s.TTL)
	if s.TTL > maxSteeredTTL {
		v.warnf(key+".ttl", "%d s is long for a steered name: resolvers keep a failed endpoint that long", s.TTL)
	}
	if s.MaxAnswers < 1 || s.MaxAnswers > 64 {
		v.errorf(key+".max_answers", "%d is outside 1..64", s.MaxAnswers)
	}
	v.checkRef(key+".check", s.Check)
	var err error
	if s.QuorumRule, err = ParseQuorum(s.Quorum); err != nil {
		v.errorf(key+".quorum", "%v", err)
	}
	if s.Tolerance, err = ParseTolerance(s.LatencyTolerance); err != nil {
		v.errorf(key+".latency_tolerance", "%v", err)
	}
	v.endpoints(key, s)
}

func (v *validator) checkRef(key, name string) {
	if name == "" {
		return
	}
	if _, ok := v.cfg.Checks[name]; !ok {
		v.errorf(key, "%q is not a check in [checks]", name)
	}
}

func (v *validator) endpoints(key string, s *Service) {
	if len(s.Endpoints) == 0 || len(s.Endpoints) > MaxEndpoints {
		v.errorf(key+".endpoints", "has %d endpoints: a service needs 1..%d", len(s.Endpoints), MaxEndpoints)
		return
	}
	names := map[string]bool{}
	positive, cnames := false, 0
	for j := range s.Endpoints {
		e := &s.Endpoints[j]
		ekey := fmt.Sprintf("%s.endpoints[%d]", key, j)
		if names[e.Name] {
			v.errorf(ekey+".name", "%q is used twice in this service", e.Name)
		}
		names[e.Name] = true
		v.endpoint(ekey, e)
		if e.Check != s.Check { // an inherited check was reported at the service
			v.checkRef(ekey+".check", e.Check)
		}
		positive = positive || e.EffectiveWeight() > 0
		if e.CNAME != "" {
			cnames++
		}
	}
	if !positive {
		v.errorf(key+".endpoints", "at least one endpoint needs a weight above 0")
	}
	v.cnameService(key, s, cnames)
}

// cnameService checks services answered by CNAME: a CNAME cannot share its
// name with other data, so such a service is all-CNAME, one answer, not at an apex.
func (v *validator) cnameService(key string, s *Service, cnames int) {
	if cnames == 0 {
		return
	}
	if cnames != len(s.Endpoints) {
		v.errorf(key+".endpoints", "mixes address and cname endpoints")
	}
	if s.MaxAnswers != 1 {
		v.errorf(key+".max_answers", "must be 1 for cname endpoints")
	}
	if s.Zone >= 0 && s.Name == v.cfg.Zones[s.Zone].Origin {
		v.errorf(key+".name", "a zone apex cannot be answered by CNAME")
	}
}

func (v *validator) endpoint(key string, e *Endpoint) {
	if e.Name == "" {
		v.errorf(key+".name", "is required")
	}
	switch {
	case e.Region == "":
		v.errorf(key+".region", "is required")
	case !v.hasRegion(e.Region):
		v.errorf(key+".region", "%q is not a region in [regions] (have %s)", e.Region, v.regionNames())
	}
	v.endpointTarget(key, e)
	if e.EffectiveWeight() < 0 {
		v.errorf(key+".weight", "%d is negative", e.EffectiveWeight())
	}
	if e.Priority < 0 {
		v.errorf(key+".priority", "%d is negative", e.Priority)
	}
	if c := e.Capacity; c != nil && !(*c >= 0 && *c <= math.MaxFloat64) { // also rejects NaN and +Inf
		v.errorf(key+".capacity", "%g is not a finite number ≥ 0", *c)
	}
	if e.ProbeAddress != "" {
		if _, err := netip.ParseAddr(e.ProbeAddress); err != nil {
			v.errorf(key+".probe_address", "%q is not an IP address", e.ProbeAddress)
		}
	} else if e.CNAME != "" && e.Check != "" {
		v.errorf(key+".probe_address", "is required: a cname endpoint has no address for check %q to probe", e.Check)
	}
}

func (v *validator) endpointTarget(key string, e *Endpoint) {
	switch {
	case e.Address != "" && e.CNAME != "":
		v.errorf(key, "has both address and cname")
	case e.Address != "":
		a, err := netip.ParseAddr(e.Address)
		if err != nil || a.Zone() != "" {
			v.errorf(key+".address", "%q is not an IP address", e.Address)
			return
		}
		e.Addr = a.Unmap()
	case e.CNAME != "":
		v.domainName(key+".cname", e.CNAME)
	default:
		v.errorf(key, "needs an address or a cname")
	}
}
