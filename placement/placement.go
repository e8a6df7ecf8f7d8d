// Package placement places a DNS client in a region for the latency policy.
//
// A client address (the ECS subnet when the query carries one, else the
// resolver's address) is placed by the first rule that applies:
//
//  1. network: the longest of every region's configured networks that
//     contains the address;
//  2. geoip: the region whose location is nearest, by great-circle distance,
//     to the client's location in a MaxMind City database;
//  3. node: the region of the node that got the query.
//
// Each Placement carries the ECS scope prefix length the decision used, so
// the resolver can answer with it (RFC 7871). A Placer is immutable once New
// returns it and Place is safe for concurrent use without locks; a
// configuration reload builds a new Placer and swaps it in.
package placement

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"

	"meridian/config"
)

// Rule says which rule placed a client.
type Rule uint8

const (
	// RuleNode placed the client in the region of the node that got the query:
	// no network matched and GeoIP had no answer.
	RuleNode Rule = iota
	// RuleNetwork placed the client by the longest configured network that
	// contains it.
	RuleNetwork
	// RuleGeoIP placed the client in the region nearest to its GeoIP location.
	RuleGeoIP
)

// String returns "network", "geoip" or "node".
func (r Rule) String() string {
	switch r {
	case RuleNetwork:
		return "network"
	case RuleGeoIP:
		return "geoip"
	case RuleNode:
		return "node"
	}
	return "Rule(" + strconv.Itoa(int(r)) + ")"
}

// Placement is where a client was placed, and why.
type Placement struct {
	// Region is the region the client was placed in.
	Region string
	// Rule is the rule that placed the client.
	Rule Rule
	// Scope is the ECS scope prefix length the decision used: the matched
	// network's length for RuleNetwork; 24 (IPv4) or 56 (IPv6) for RuleGeoIP,
	// the granularity at which GeoIP answers are cached; 0 for RuleNode.
	Scope uint8
	// Network is the configured network that matched (RuleNetwork only; the
	// zero Prefix otherwise).
	Network netip.Prefix
	// Location is the client's GeoIP location as (latitude, longitude) in
	// degrees; it is set, with HasLocation, only by RuleGeoIP.
	Location [2]float64
	// HasLocation reports whether Location is set.
	HasLocation bool
}

// Options configures a Placer.
type Options struct {
	// Regions holds every region's networks (Prefixes, or Networks when
	// Prefixes is empty) and optional location.
	Regions map[string]config.Region
	// NodeRegion is the region of this node: the fallback placement. It must
	// be one of Regions.
	NodeRegion string
	// GeoIPFile is an optional MaxMind DB in the City schema
	// (location.latitude, location.longitude); "" disables the GeoIP rule.
	GeoIPFile string
}

// Placer places clients in regions. It is immutable, and Place and
// NearestRegion are safe for concurrent use.
type Placer struct {
	node    string
	nets    netTable
	located []located // regions with a location, by name
	geo     atomic.Pointer[geoState]
}

// located is a region with a location.
type located struct {
	name string
	loc  [2]float64
}

// New builds a Placer from opts. It reads the whole GeoIP database into
// memory, so that Close never pulls data from under a Place still running
// on a Placer that a reload has replaced.
//
// A network listed in several regions goes to the region whose name sorts
// last; the config loader is expected to reject such a configuration.
// IPv4-mapped IPv6 networks (::ffff:a.b.c.d/n, n >= 96) are treated as the
// IPv4 networks they map.
func New(opts Options) (*Placer, error) {
	if opts.NodeRegion == "" {
		return nil, errors.New("placement: node region is required")
	}
	if _, ok := opts.Regions[opts.NodeRegion]; !ok {
		return nil, fmt.Errorf("placement: node region %q is not one of the regions", opts.NodeRegion)
	}
	if len(opts.Regions) > maxRegions {
		return nil, fmt.Errorf("placement: %d regions, more than %d", len(opts.Regions), maxRegions)
	}
	p := &Placer{node: opts.NodeRegion}
	var nets []netEntry
	for _, name := range slices.Sorted(maps.Keys(opts.Regions)) {
		r := opts.Regions[name]
		if err := p.addLocation(name, r.Location); err != nil {
			return nil, err
		}
		prefixes, err := regionPrefixes(name, r)
		if err != nil {
			return nil, err
		}
		for _, pfx := range prefixes {
			nets = append(nets, netEntry{prefix: pfx, region: name})
		}
	}
	p.nets = buildNetTable(nets)
	if opts.GeoIPFile != "" {
		st, err := openGeo(opts.GeoIPFile)
		if err != nil {
			return nil, err
		}
		p.geo.Store(st)
	}
	return p, nil
}

func (p *Placer) addLocation(name string, loc []float64) error {
	switch {
	case len(loc) == 0:
		return nil
	case len(loc) != 2:
		return fmt.Errorf("placement: region %q: location must be [latitude, longitude], not %d numbers", name, len(loc))
	case !(loc[0] >= -90 && loc[0] <= 90) || !(loc[1] >= -180 && loc[1] <= 180):
		return fmt.Errorf("placement: region %q: location %v is not a latitude and longitude", name, loc)
	}
	p.located = append(p.located, located{name: name, loc: [2]float64{loc[0], loc[1]}})
	return nil
}

// regionPrefixes returns r.Prefixes, or r.Networks parsed when Prefixes is
// empty (a Region that did not come through config.Load), all masked and
// with IPv4-mapped networks unmapped.
func regionPrefixes(name string, r config.Region) ([]netip.Prefix, error) {
	prefixes := r.Prefixes
	if len(prefixes) == 0 {
		for _, n := range r.Networks {
			pfx, err := netip.ParsePrefix(n)
			if err != nil {
				return nil, fmt.Errorf("placement: region %q: %w", name, err)
			}
			prefixes = append(prefixes, pfx)
		}
	}
	out := make([]netip.Prefix, 0, len(prefixes))
	for _, pfx := range prefixes {
		if !pfx.IsValid() {
			return nil, fmt.Errorf("placement: region %q: invalid network %v", name, pfx)
		}
		out = append(out, canonical(pfx))
	}
	return out, nil
}

// canonical masks pfx and turns an IPv4-mapped IPv6 network into its IPv4
// network, since Place unmaps client addresses.
func canonical(pfx netip.Prefix) netip.Prefix {
	pfx = pfx.Masked()
	if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx
}

// Place places client (IPv4-mapped addresses are unmapped first). It never
// blocks, takes no lock, and does not allocate for the network rule, the
// node fallback, or a GeoIP answer already cached.
func (p *Placer) Place(client netip.Addr) Placement {
	client = client.Unmap()
	if network, region, ok := p.nets.lookup(client); ok {
		return Placement{Region: region, Rule: RuleNetwork, Scope: uint8(network.Bits()), Network: network}
	}
	if len(p.located) > 0 {
		if st := p.geo.Load(); st != nil {
			if ans := st.answer(client, p); ans.ok {
				return Placement{Region: ans.region, Rule: RuleGeoIP, Scope: ans.scope, Location: ans.loc, HasLocation: true}
			}
		}
	}
	return Placement{Region: p.node, Rule: RuleNode}
}

// NearestRegion returns the region with a location nearest to loc
// (latitude, longitude in degrees) by great-circle distance; on a tie, the
// name that sorts first. It returns false when no region has a location or
// loc is not a coordinate.
func (p *Placer) NearestRegion(loc [2]float64) (string, bool) {
	best, bestKm := "", math.Inf(1)
	for _, r := range p.located {
		if d := Distance(loc, r.loc); d < bestKm {
			best, bestKm = r.name, d
		}
	}
	return best, best != ""
}

// Close releases the GeoIP database. Place keeps working afterwards, without
// the GeoIP rule; a Place running during Close is safe, because the database
// lives in memory the garbage collector frees once the last user is done.
func (p *Placer) Close() error {
	p.geo.Store(nil)
	return nil
}
