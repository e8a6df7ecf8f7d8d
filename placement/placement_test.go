package placement

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"meridian/config"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// region builds a config.Region the way config.Load leaves it.
func region(loc []float64, networks ...string) config.Region {
	r := config.Region{Location: loc, Networks: networks}
	for _, n := range networks {
		r.Prefixes = append(r.Prefixes, pfx(n).Masked())
	}
	return r
}

func mustNew(t testing.TB, opts Options) *Placer {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func network(r, n string) Placement {
	p := pfx(n)
	return Placement{Region: r, Rule: RuleNetwork, Scope: uint8(p.Bits()), Network: p}
}

func node(r string) Placement { return Placement{Region: r, Rule: RuleNode} }

func TestPlaceNetworks(t *testing.T) {
	nested := Options{
		NodeRegion: "home",
		Regions: map[string]config.Region{
			"home":     region(nil),
			"us-east":  region(nil, "10.0.0.0/8", "10.1.2.128/25", "2001:db8::/32", "2001:db8:1:2::1/128"),
			"eu-west":  region(nil, "10.1.0.0/16", "10.1.2.200/32", "2001:db8:1::/48", "::ffff:198.51.100.0/120"),
			"ap-south": region(nil, "10.1.2.0/24", "2001:db8:1:2::/64"),
		},
	}
	defaultRoute := Options{
		NodeRegion: "home",
		Regions: map[string]config.Region{
			"home":   region(nil),
			"global": region(nil, "0.0.0.0/0", "::/0"),
			"test":   region(nil, "203.0.113.0/24", "2001:db8::/32"),
		},
	}
	tests := []struct {
		name   string
		opts   Options
		client string
		want   Placement
	}{
		{"outer /8", nested, "10.2.3.4", network("us-east", "10.0.0.0/8")},
		{"first of /8", nested, "10.0.0.0", network("us-east", "10.0.0.0/8")},
		{"last of /8", nested, "10.255.255.255", network("us-east", "10.0.0.0/8")},
		{"nested /16 wins", nested, "10.1.9.9", network("eu-west", "10.1.0.0/16")},
		{"nested /24 wins", nested, "10.1.2.3", network("ap-south", "10.1.2.0/24")},
		{"nested /25 back to outer region", nested, "10.1.2.130", network("us-east", "10.1.2.128/25")},
		{"host route /32", nested, "10.1.2.200", network("eu-west", "10.1.2.200/32")},
		{"after host route", nested, "10.1.2.201", network("us-east", "10.1.2.128/25")},
		{"after /16", nested, "10.2.0.0", network("us-east", "10.0.0.0/8")},
		{"before /8", nested, "9.255.255.255", node("home")},
		{"after /8", nested, "11.0.0.0", node("home")},
		{"zero address", nested, "0.0.0.0", node("home")},
		{"broadcast", nested, "255.255.255.255", node("home")},
		{"mapped v4 client", nested, "::ffff:10.1.2.3", network("ap-south", "10.1.2.0/24")},
		{"mapped config network", nested, "198.51.100.7", network("eu-west", "198.51.100.0/24")},
		{"mapped config network, mapped client", nested, "::ffff:198.51.100.7", network("eu-west", "198.51.100.0/24")},
		{"v4-compatible v6 is not v4", nested, "::10.1.2.3", node("home")},
		{"v6 /32", nested, "2001:db8::1", network("us-east", "2001:db8::/32")},
		{"v6 nested /48", nested, "2001:db8:1::5", network("eu-west", "2001:db8:1::/48")},
		{"v6 nested /64", nested, "2001:db8:1:2::2", network("ap-south", "2001:db8:1:2::/64")},
		{"v6 nested /128", nested, "2001:db8:1:2::1", network("us-east", "2001:db8:1:2::1/128")},
		{"v6 last of /32", nested, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", network("us-east", "2001:db8::/32")},
		{"v6 zone ignored", nested, "2001:db8::1%eth0", network("us-east", "2001:db8::/32")},
		{"v6 no match", nested, "2001:db9::", node("home")},
		{"v6 all ones", nested, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", node("home")},
		{"default route v4", defaultRoute, "8.8.8.8", network("global", "0.0.0.0/0")},
		{"default route v4 first", defaultRoute, "0.0.0.0", network("global", "0.0.0.0/0")},
		{"default route v4 last", defaultRoute, "255.255.255.255", network("global", "0.0.0.0/0")},
		{"default route mapped client", defaultRoute, "::ffff:8.8.8.8", network("global", "0.0.0.0/0")},
		{"specific beats default", defaultRoute, "203.0.113.9", network("test", "203.0.113.0/24")},
		{"after specific", defaultRoute, "203.0.114.0", network("global", "0.0.0.0/0")},
		{"default route v6", defaultRoute, "2600::1", network("global", "::/0")},
		{"default route v6 last", defaultRoute, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", network("global", "::/0")},
		{"specific v6 beats default", defaultRoute, "2001:db8::53", network("test", "2001:db8::/32")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, tt.opts)
			if got := p.Place(addr(tt.client)); got != tt.want {
				t.Errorf("Place(%s) = %+v, want %+v", tt.client, got, tt.want)
			}
		})
	}
	t.Run("invalid address", func(t *testing.T) {
		p := mustNew(t, defaultRoute)
		if got, want := p.Place(netip.Addr{}), node("home"); got != want {
			t.Errorf("Place(invalid) = %+v, want %+v", got, want)
		}
	})
}

func TestPlaceNetworksFromStrings(t *testing.T) {
	// A Region that did not come through config.Load has Networks only.
	p := mustNew(t, Options{NodeRegion: "a", Regions: map[string]config.Region{
		"a": {Networks: []string{"192.0.2.1/24"}},
	}})
	if got, want := p.Place(addr("192.0.2.9")), network("a", "192.0.2.0/24"); got != want {
		t.Errorf("Place = %+v, want %+v", got, want)
	}
}

func TestPlaceDuplicateNetworkLastRegionWins(t *testing.T) {
	// The config loader should reject this; placement resolves it the same
	// way every time: the region whose name sorts last wins.
	for range 20 {
		p := mustNew(t, Options{NodeRegion: "b", Regions: map[string]config.Region{
			"c": region(nil, "10.0.0.0/8", "2001:db8::/32"),
			"a": region(nil, "10.0.0.0/8", "2001:db8::/32"),
			"b": region(nil, "10.0.0.0/8", "2001:db8::/32"),
		}})
		if got := p.Place(addr("10.9.9.9")).Region; got != "c" {
			t.Fatalf("10.9.9.9 placed in %q, want c", got)
		}
		if got := p.Place(addr("2001:db8::9")).Region; got != "c" {
			t.Fatalf("2001:db8::9 placed in %q, want c", got)
		}
	}
}

// TestPlaceNetworksMatchesLinearScan checks the range table against a
// linear longest-prefix match over random, heavily nested networks.
func TestPlaceNetworksMatchesLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		regions := map[string]config.Region{"home": {}}
		var all []netEntry
		names := []string{"r0", "r1", "r2", "r3"}
		for range 1 + rng.IntN(200) {
			var p netip.Prefix
			if rng.IntN(2) == 0 {
				// IPv4 inside 10.0.0.0/16 so that networks nest often.
				a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(4)), byte(rng.IntN(256))})
				p = netip.PrefixFrom(a, 14+rng.IntN(19)).Masked()
			} else {
				var b [16]byte
				b[0], b[1], b[2] = 0x20, 0x01, byte(rng.IntN(4))
				b[15] = byte(rng.IntN(256))
				bits := []int{0, 8, 16, 20, 24, 64, 100, 120, 124, 128}[rng.IntN(10)]
				p = netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked()
			}
			name := names[rng.IntN(len(names))]
			r := regions[name]
			r.Prefixes = append(r.Prefixes, p)
			regions[name] = r
			all = append(all, netEntry{p, name})
		}
		p := mustNew(t, Options{NodeRegion: "home", Regions: regions})
		linear := func(a netip.Addr) Placement {
			best := Placement{Region: "home", Rule: RuleNode}
			for _, e := range all {
				if e.prefix.Contains(a) && (best.Rule == RuleNode || e.prefix.Bits() > best.Network.Bits() ||
					e.prefix.Bits() == best.Network.Bits() && e.region > best.Region) {
					best = Placement{Region: e.region, Rule: RuleNetwork, Scope: uint8(e.prefix.Bits()), Network: e.prefix}
				}
			}
			return best
		}
		for range 2000 {
			var a netip.Addr
			if rng.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(5)), byte(rng.IntN(256))})
			} else {
				var b [16]byte
				b[0], b[1], b[2] = 0x20, 0x01, byte(rng.IntN(5))
				b[15] = byte(rng.IntN(256))
				a = netip.AddrFrom16(b)
			}
			if got, want := p.Place(a), linear(a); got != want {
				t.Fatalf("round %d: Place(%s) = %+v, want %+v", round, a, got, want)
			}
		}
	}
}

func TestRuleString(t *testing.T) {
	for r, want := range map[Rule]string{RuleNetwork: "network", RuleGeoIP: "geoip", RuleNode: "node", Rule(9): "Rule(9)"} {
		if got := r.String(); got != want {
			t.Errorf("Rule(%d).String() = %q, want %q", r, got, want)
		}
	}
}

func TestDistance(t *testing.T) {
	var (
		newYork    = [2]float64{40.7128, -74.0060}
		london     = [2]float64{51.5074, -0.1278}
		sydney     = [2]float64{-33.8688, 151.2093}
		losAngeles = [2]float64{34.0522, -118.2437}
	)
	tests := []struct {
		name     string
		a, b     [2]float64
		want, ok float64 // km, tolerance
	}{
		{"New York-London", newYork, london, 5570, 10},
		{"London-New York", london, newYork, 5570, 10},
		// 12,051 km is the ellipsoidal (Vincenty) figure; a sphere is within 0.5%.
		{"Sydney-Los Angeles", sydney, losAngeles, 12051, 0.005 * 12051},
		{"same point", london, london, 0, 1e-9},
		{"antipodes on the equator", [2]float64{0, 0}, [2]float64{0, 180}, 20015.1, 1},
		{"pole to pole", [2]float64{90, 0}, [2]float64{-90, 0}, 20015.1, 1},
		{"across the antimeridian", [2]float64{0, 179.5}, [2]float64{0, -179.5}, 111.2, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Distance(tt.a, tt.b); !(got >= tt.want-tt.ok && got <= tt.want+tt.ok) {
				t.Errorf("Distance(%v, %v) = %.1f km, want %.1f ± %g", tt.a, tt.b, got, tt.want, tt.ok)
			}
		})
	}
}

func TestNearestRegion(t *testing.T) {
	p := mustNew(t, Options{NodeRegion: "home", Regions: map[string]config.Region{
		"home":     region(nil),
		"us-east":  region([]float64{38.9, -77.4}),
		"eu-west":  region([]float64{53.35, -6.26}),
		"ap-south": region([]float64{19.07, 72.88}),
		"twin-a":   region([]float64{-33.9, 151.2}),
		"twin-b":   region([]float64{-33.9, 151.2}),
	}})
	tests := []struct {
		name   string
		loc    [2]float64
		want   string
		wantOK bool
	}{
		{"London", [2]float64{51.5, -0.13}, "eu-west", true},
		{"Sao Paulo", [2]float64{-23.55, -46.63}, "us-east", true},
		{"Singapore", [2]float64{1.35, 103.8}, "ap-south", true},
		{"tie goes to the first name", [2]float64{-37.8, 145}, "twin-a", true},
		{"not a coordinate", [2]float64{nan(), 0}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := p.NearestRegion(tt.loc)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("NearestRegion(%v) = %q, %v, want %q, %v", tt.loc, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	none := mustNew(t, Options{NodeRegion: "home", Regions: map[string]config.Region{"home": region(nil)}})
	if got, ok := none.NearestRegion([2]float64{0, 0}); ok {
		t.Errorf("NearestRegion without located regions = %q, true", got)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := writeFile(t, dir, "corrupt.mmdb", []byte(strings.Repeat("not a maxmind db ", 100)))
	empty := writeFile(t, dir, "empty.mmdb", nil)
	missing := dir + "/missing.mmdb"
	home := map[string]config.Region{"home": region(nil)}
	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error
	}{
		{"missing file", Options{NodeRegion: "home", Regions: home, GeoIPFile: missing}, []string{"geoip database", missing, "no such file"}},
		{"corrupt file", Options{NodeRegion: "home", Regions: home, GeoIPFile: corrupt}, []string{"geoip database", corrupt}},
		{"empty file", Options{NodeRegion: "home", Regions: home, GeoIPFile: empty}, []string{"geoip database", empty}},
		{"no node region", Options{Regions: home}, []string{"node region is required"}},
		{"unknown node region", Options{NodeRegion: "mars", Regions: home}, []string{`node region "mars"`}},
		{"short location", Options{NodeRegion: "home", Regions: map[string]config.Region{
			"home": region([]float64{1, 2, 3}),
		}}, []string{`region "home"`, "[latitude, longitude]"}},
		{"latitude out of range", Options{NodeRegion: "home", Regions: map[string]config.Region{
			"home": region([]float64{91, 0}),
		}}, []string{`region "home"`, "location"}},
		{"bad network", Options{NodeRegion: "home", Regions: map[string]config.Region{
			"home": {Networks: []string{"10.0.0.0/33"}},
		}}, []string{`region "home"`, "10.0.0.0/33"}},
		{"invalid prefix", Options{NodeRegion: "home", Regions: map[string]config.Region{
			"home": {Prefixes: []netip.Prefix{{}}},
		}}, []string{`region "home"`, "invalid network"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.opts)
			if err == nil {
				p.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "placement: ") {
				t.Errorf("error %q does not start with %q", err, "placement: ")
			}
		})
	}
}

func TestPlaceDoesNotAllocate(t *testing.T) {
	dbFile := writeCityDB(t, cityRecords)
	p := mustNew(t, Options{NodeRegion: "home", Regions: geoRegions(), GeoIPFile: dbFile})
	plain := mustNew(t, Options{NodeRegion: "home", Regions: geoRegions()})
	tests := []struct {
		name   string
		p      *Placer
		client string
		rule   Rule
	}{
		{"network v4", p, "192.0.2.7", RuleNetwork},
		{"network v6", p, "2001:db8::7", RuleNetwork},
		{"network mapped v4", p, "::ffff:192.0.2.7", RuleNetwork},
		{"node fallback without geoip", plain, "9.9.9.9", RuleNode},
		{"node fallback, invalid address", p, "", RuleNode},
		{"node fallback, cached geoip miss", p, "9.9.9.9", RuleNode},
		{"geoip, cached", p, "3.80.7.7", RuleGeoIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a netip.Addr
			if tt.client != "" {
				a = addr(tt.client)
			}
			if got := tt.p.Place(a).Rule; got != tt.rule {
				t.Fatalf("Place(%s).Rule = %v, want %v", tt.client, got, tt.rule)
			}
			if n := testing.AllocsPerRun(1000, func() { tt.p.Place(a) }); n != 0 {
				t.Errorf("Place(%s) allocates %v times", tt.client, n)
			}
		})
	}
}

func TestPlaceConcurrent(t *testing.T) {
	dbFile := writeCityDB(t, cityRecords)
	p := mustNew(t, Options{NodeRegion: "home", Regions: geoRegions(), GeoIPFile: dbFile})
	clients := []netip.Addr{
		addr("192.0.2.7"), addr("2001:db8::7"), addr("3.80.1.1"), addr("52.16.9.9"),
		addr("13.232.4.4"), addr("2a05:d018::1"), addr("9.9.9.9"), addr("::ffff:3.80.2.2"),
	}
	// Expected answers come from a fresh Placer, so the shared one starts cold.
	ref := mustNew(t, Options{NodeRegion: "home", Regions: geoRegions(), GeoIPFile: dbFile})
	want := make([]Placement, len(clients))
	for i, c := range clients {
		want[i] = ref.Place(c)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				j := (g + i) % len(clients)
				// Distinct /24s too, so that goroutines fill and evict slots.
				extra := netip.AddrFrom4([4]byte{3, 80, byte(i), byte(g)})
				p.Place(extra)
				if got := p.Place(clients[j]); got != want[j] {
					select {
					case errs <- clients[j].String() + ": " + got.Region:
					default:
					}
					return
				}
			}
		})
	}
	wg.Go(func() {
		// Close while others place: they must fall back, not crash.
		for i := range 200 {
			if i == 150 {
				ref.Close()
			}
			ref.Place(netip.AddrFrom4([4]byte{52, 16, byte(i), 1}))
		}
	})
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Place gave a different answer: %s", e)
	}
}
