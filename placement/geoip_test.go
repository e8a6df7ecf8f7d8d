package placement

import (
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"meridian/config"
)

// cityNet is one network of a test City database; a nil loc writes a
// record without a location (as for country-level data).
type cityNet struct {
	network string
	city    string
	loc     []float64
}

var (
	ashburn  = []float64{39.0438, -77.4874}
	dublin   = []float64{53.3498, -6.2603}
	mumbai   = []float64{19.0760, 72.8777}
	london   = []float64{51.5142, -0.0931}
	saoPaulo = []float64{-23.5475, -46.6361}
)

var cityRecords = []cityNet{
	{"3.80.0.0/16", "Ashburn", ashburn},
	{"52.16.0.0/16", "Dublin", dublin},
	{"13.232.0.0/16", "Mumbai", mumbai},
	{"81.2.69.0/24", "London", london},
	{"81.2.70.0/25", "London", london},
	{"81.2.70.128/25", "Mumbai", mumbai},
	{"177.71.0.0/16", "Sao Paulo", saoPaulo},
	{"5.5.0.0/16", "", nil},
	{"2600:1f18::/32", "Ashburn", ashburn},
	{"2a05:d018::/32", "Dublin", dublin},
	{"2406:da1a::/32", "Mumbai", mumbai},
}

// geoRegions has three located regions (one with networks that override
// GeoIP) and the node's own region, "home", without a location.
func geoRegions() map[string]config.Region {
	return map[string]config.Region{
		"home":     region(nil),
		"us-east":  region([]float64{38.9, -77.4}),
		"eu-west":  region([]float64{53.35, -6.26}, "192.0.2.0/24", "2001:db8::/32", "3.80.1.0/24"),
		"ap-south": region([]float64{19.07, 72.88}),
	}
}

// writeCityDB writes a City-schema MaxMind DB holding recs and returns its path.
func writeCityDB(t testing.TB, recs []cityNet) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoIP2-City",
		Languages:               []string{"en"},
		RecordSize:              28,
		IncludeReservedNetworks: true,
	})
	if err != nil {
		t.Fatalf("mmdbwriter.New: %v", err)
	}
	for _, r := range recs {
		_, n, err := net.ParseCIDR(r.network)
		if err != nil {
			t.Fatalf("parse %s: %v", r.network, err)
		}
		if err := w.Insert(n, cityValue(r)); err != nil {
			t.Fatalf("insert %s: %v", r.network, err)
		}
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "city.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := w.WriteTo(f); err != nil {
		t.Fatalf("write mmdb: %v", err)
	}
	return f.Name()
}

func cityValue(r cityNet) mmdbtype.Map {
	m := mmdbtype.Map{
		"country": mmdbtype.Map{"iso_code": mmdbtype.String("ZZ")},
	}
	if r.loc != nil {
		m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(r.city)}}
		m["location"] = mmdbtype.Map{
			"accuracy_radius": mmdbtype.Uint16(20),
			"latitude":        mmdbtype.Float64(r.loc[0]),
			"longitude":       mmdbtype.Float64(r.loc[1]),
			"time_zone":       mmdbtype.String("Etc/UTC"),
		}
	}
	return m
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func nan() float64 { return math.NaN() }

func geo(region string, scope uint8, loc []float64) Placement {
	return Placement{Region: region, Rule: RuleGeoIP, Scope: scope, Location: [2]float64{loc[0], loc[1]}, HasLocation: true}
}

func TestPlaceGeoIP(t *testing.T) {
	p := mustNew(t, Options{NodeRegion: "home", Regions: geoRegions(), GeoIPFile: writeCityDB(t, cityRecords)})
	tests := []struct {
		name   string
		client string
		want   Placement
	}{
		{"Virginia", "3.80.7.7", geo("us-east", 24, ashburn)},
		{"Dublin", "52.16.200.1", geo("eu-west", 24, dublin)},
		{"Mumbai", "13.232.1.1", geo("ap-south", 24, mumbai)},
		{"London is nearest Dublin", "81.2.69.142", geo("eu-west", 24, london)},
		{"Sao Paulo is nearest Virginia", "177.71.3.3", geo("us-east", 24, saoPaulo)},
		{"mapped v4 client", "::ffff:52.16.200.1", geo("eu-west", 24, dublin)},
		{"IPv6 Virginia", "2600:1f18:ab::1", geo("us-east", 56, ashburn)},
		{"IPv6 Dublin", "2a05:d018:1:2::3", geo("eu-west", 56, dublin)},
		{"IPv6 Mumbai", "2406:da1a::1", geo("ap-south", 56, mumbai)},
		// The database splits 81.2.70.0/24; the answer is per /24, looked
		// up at its first address, whichever client asks first.
		{"split /24, upper half", "81.2.70.200", geo("eu-west", 24, london)},
		{"split /24, lower half", "81.2.70.1", geo("eu-west", 24, london)},
		{"network rule beats GeoIP", "3.80.1.9", network("eu-west", "3.80.1.0/24")},
		{"record without location", "5.5.5.5", node("home")},
		{"IPv4 not in database", "9.9.9.9", node("home")},
		{"IPv6 not in database", "2c0f:f248::1", node("home")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := addr(tt.client)
			if got := p.Place(a); got != tt.want {
				t.Errorf("Place(%s) = %+v, want %+v", tt.client, got, tt.want)
			}
			if got := p.Place(a); got != tt.want { // now from the cache
				t.Errorf("cached Place(%s) = %+v, want %+v", tt.client, got, tt.want)
			}
		})
	}
}

func TestPlaceGeoIPWithoutLocatedRegions(t *testing.T) {
	p := mustNew(t, Options{NodeRegion: "home", GeoIPFile: writeCityDB(t, cityRecords),
		Regions: map[string]config.Region{"home": region(nil), "other": region(nil)}})
	if got, want := p.Place(addr("3.80.7.7")), node("home"); got != want {
		t.Errorf("Place = %+v, want %+v", got, want)
	}
}

func TestPlaceAfterClose(t *testing.T) {
	p := mustNew(t, Options{NodeRegion: "home", Regions: geoRegions(), GeoIPFile: writeCityDB(t, cityRecords)})
	if got := p.Place(addr("52.16.1.1")); got.Rule != RuleGeoIP {
		t.Fatalf("before Close: %+v", got)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	tests := []struct {
		client string
		want   Placement
	}{
		{"52.16.1.1", node("home")}, // cached before Close: not used after
		{"13.232.1.1", node("home")},
		{"192.0.2.1", network("eu-west", "192.0.2.0/24")},
	}
	for _, tt := range tests {
		if got := p.Place(addr(tt.client)); got != tt.want {
			t.Errorf("after Close, Place(%s) = %+v, want %+v", tt.client, got, tt.want)
		}
	}
}

func TestGeoCacheEviction(t *testing.T) {
	// Three times more /56s than slots: answers must stay right while slots
	// are overwritten.
	p := mustNew(t, Options{NodeRegion: "home", Regions: geoRegions(), GeoIPFile: writeCityDB(t, cityRecords)})
	for i := range 3 * geoCacheSlots {
		b := [16]byte{0x2a, 0x05, 0xd0, 0x18, byte(i >> 16), byte(i >> 8), byte(i), 0, 15: 1}
		want := "eu-west"
		if i%2 == 1 {
			b[0], b[1], b[2], b[3] = 0x24, 0x06, 0xda, 0x1a
			want = "ap-south"
		}
		a := netip.AddrFrom16(b)
		if got := p.Place(a); got.Region != want || got.Rule != RuleGeoIP || got.Scope != 56 {
			t.Fatalf("Place(%s) = %+v, want %s by geoip", a, got, want)
		}
	}
}

func TestGeoKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.255", true},
		{"192.0.2.1", "192.0.3.1", false},
		{"2001:db8:0:ff::1", "2001:db8:0:ff:ffff::1", true},
		{"2001:db8:0:ff::1", "2001:db8:0:100::1", false},
		{"0.0.0.0", "::", false},
		{"1.2.3.4", "102:300::", false},
	}
	for _, tt := range tests {
		if got := geoKey(addr(tt.a)) == geoKey(addr(tt.b)); got != tt.same {
			t.Errorf("geoKey(%s) == geoKey(%s) is %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}
