package placement

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"meridian/config"
)

// randomRegions spreads n random networks of one family (seeded) over 16
// regions: IPv4 networks of /12 to /28, IPv6 networks of /20 to /64 in
// 2000::/4.
func randomRegions(rng *rand.Rand, n int, v6 bool) map[string]config.Region {
	regions := map[string]config.Region{"home": {}}
	for i := range n {
		var p netip.Prefix
		if v6 {
			var b [16]byte
			hi, lo := rng.Uint64(), rng.Uint64()
			for j := range 8 {
				b[j], b[8+j] = byte(hi>>(56-8*j)), byte(lo>>(56-8*j))
			}
			b[0] = 0x20 | b[0]&0x0f
			p = netip.PrefixFrom(netip.AddrFrom16(b), 20+rng.IntN(45)).Masked()
		} else {
			v := rng.Uint32()
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			p = netip.PrefixFrom(a, 12+rng.IntN(17)).Masked()
		}
		name := fmt.Sprintf("r%02d", i%16)
		r := regions[name]
		r.Prefixes = append(r.Prefixes, p)
		regions[name] = r
	}
	return regions
}

// clients returns 1024 addresses of the family that Place puts (hit) or
// does not put (miss) by the network rule.
func clients(b *testing.B, p *Placer, rng *rand.Rand, regions map[string]config.Region, v6, hit bool) []netip.Addr {
	var all []netip.Prefix
	for _, r := range regions {
		all = append(all, r.Prefixes...)
	}
	var out []netip.Addr
	for tries := 0; len(out) < 1024; tries++ {
		if tries > 1e7 {
			b.Fatal("cannot find enough clients")
		}
		var a netip.Addr
		if hit {
			n := all[rng.IntN(len(all))]
			a = randomIn(rng, n)
		} else if v6 {
			a = randomIn(rng, netip.MustParsePrefix("2000::/4"))
		} else {
			a = randomIn(rng, netip.MustParsePrefix("0.0.0.0/0"))
		}
		if got := p.Place(a).Rule == RuleNetwork; got == hit {
			out = append(out, a)
		}
	}
	return out
}

// randomIn returns a random address in n.
func randomIn(rng *rand.Rand, n netip.Prefix) netip.Addr {
	if n.Addr().Is4() {
		b := n.Addr().As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if n.Bits() < 32 {
			v |= rng.Uint32() >> n.Bits()
		}
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	b := n.Addr().As16()
	for i := range b {
		if bit := i * 8; bit+8 > n.Bits() {
			r := byte(rng.Uint32())
			if bit < n.Bits() {
				r &= 0xff >> (n.Bits() - bit)
			}
			b[i] |= r
		}
	}
	return netip.AddrFrom16(b)
}

// BenchmarkPlace100k places clients among 100,000 random networks.
func BenchmarkPlace100k(b *testing.B) {
	for _, family := range []struct {
		name string
		v6   bool
	}{{"ipv4", false}, {"ipv6", true}} {
		rng := rand.New(rand.NewPCG(42, uint64(len(family.name))))
		regions := randomRegions(rng, 100_000, family.v6)
		p, err := New(Options{NodeRegion: "home", Regions: regions})
		if err != nil {
			b.Fatal(err)
		}
		for _, hit := range []bool{true, false} {
			name := family.name + "/miss"
			if hit {
				name = family.name + "/hit"
			}
			b.Run(name, func(b *testing.B) {
				cs := clients(b, p, rng, regions, family.v6, hit)
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					p.Place(cs[i&1023])
				}
			})
		}
	}
}

// BenchmarkPlaceGeoIP places clients by GeoIP: "cached" cycles through 256
// /24s that stay in the cache; "uncached" asks for a new /24 each time
// (2^20 distinct /24s), so every call decodes the record and fills a slot.
func BenchmarkPlaceGeoIP(b *testing.B) {
	recs := append([]cityNet{}, cityRecords...)
	recs = append(recs, cityNet{"64.0.0.0/4", "Ashburn", ashburn})
	p, err := New(Options{NodeRegion: "home", Regions: geoRegions(), GeoIPFile: writeCityDB(b, recs)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	at := func(i int) netip.Addr {
		i &= 1<<20 - 1
		return netip.AddrFrom4([4]byte{64 | byte(i>>16), byte(i >> 8), byte(i), 1})
	}
	if got := p.Place(at(0)); got.Rule != RuleGeoIP {
		b.Fatalf("Place(%s) = %+v, want geoip", at(0), got)
	}
	b.Run("cached", func(b *testing.B) {
		for i := range 256 {
			p.Place(at(i))
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			p.Place(at(i & 255))
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		start := 1 << 19 // away from the /24s the cached run used
		for i := 0; b.Loop(); i++ {
			p.Place(at(start + i))
		}
	})
}
