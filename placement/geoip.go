package placement

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// GeoIP answers are cached per client network: an IPv4 /24 or an IPv6 /56,
// the ECS scope a GeoIP placement is answered with. The database is looked
// up at the network's first address, so an answer depends on the network
// alone, never on which client of it came first.
const (
	geoScope4 = 24
	geoScope6 = 56
)

// geoCacheSlots bounds the GeoIP cache: a direct-mapped table of this many
// atomic pointers, each to one immutable 48-byte answer. The cache therefore
// holds at most 65,536 networks in 3.5 MiB (512 KiB of slots plus 3 MiB of
// answers), whatever the number of distinct clients. A new network
// replaces whatever network shared its slot; the slot is chosen by a hash
// seeded per Placer, so clients cannot aim at each other's slots.
const geoCacheSlots = 1 << 16

// geoState is an open GeoIP database and the answers cached from it.
type geoState struct {
	db    *maxminddb.Reader
	seed  uint64
	slots [geoCacheSlots]atomic.Pointer[geoAnswer]
}

// geoAnswer is the placement of one client network by GeoIP.
type geoAnswer struct {
	key    uint64 // the network, as made by geoKey
	ok     bool   // false: the network is not in the database or has no location
	scope  uint8
	region string
	loc    [2]float64
}

// noAnswer is the shared answer for an address GeoIP cannot place; it is
// never written.
var noAnswer geoAnswer

// cityRecord is the part of a City-schema record that placement reads.
type cityRecord struct {
	Location struct {
		Latitude  float64 `maxminddb:"latitude"`
		Longitude float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// openGeo reads the database at file into memory and opens it.
func openGeo(file string) (*geoState, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("placement: read geoip database: %w", err)
	}
	db, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("placement: open geoip database %s: %w", file, err)
	}
	return &geoState{db: db, seed: rand.Uint64()}, nil
}

// geoKey names the /24 or /56 holding a (an unmapped, valid address); the
// low byte tells the families apart and is never zero.
func geoKey(a netip.Addr) uint64 {
	if a.Is4() {
		return uint64(addr4(a))>>8<<40 | 4
	}
	return addr6(a).hi&^0xff | 6
}

// geoNetwork returns the first address of a's /24 or /56 and the scope.
func geoNetwork(a netip.Addr) (netip.Addr, uint8) {
	if a.Is4() {
		b := a.As4()
		b[3] = 0
		return netip.AddrFrom4(b), geoScope4
	}
	b := a.As16()
	clear(b[geoScope6/8:])
	return netip.AddrFrom16(b), geoScope6
}

// slot returns the cache slot for key (a seeded splitmix64 finalizer).
func (s *geoState) slot(key uint64) *atomic.Pointer[geoAnswer] {
	h := key ^ s.seed
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	h ^= h >> 31
	return &s.slots[h>>(64-16)]
}

// answer returns the GeoIP placement of client, from the cache when it can.
func (s *geoState) answer(client netip.Addr, p *Placer) *geoAnswer {
	if !client.IsValid() {
		return &noAnswer
	}
	key := geoKey(client)
	slot := s.slot(key)
	if a := slot.Load(); a != nil && a.key == key {
		return a
	}
	a := s.lookup(client, p)
	a.key = key
	slot.Store(a)
	return a
}

// lookup places client's network by the database, bypassing the cache. A
// record that cannot be decoded counts as absent.
func (s *geoState) lookup(client netip.Addr, p *Placer) *geoAnswer {
	network, scope := geoNetwork(client)
	rec := cityRecord{}
	rec.Location.Latitude, rec.Location.Longitude = math.NaN(), math.NaN()
	res := s.db.Lookup(network)
	if !res.Found() || res.Decode(&rec) != nil {
		return &geoAnswer{}
	}
	loc := [2]float64{rec.Location.Latitude, rec.Location.Longitude}
	region, ok := p.NearestRegion(loc) // false for a missing (NaN) location
	if !ok {
		return &geoAnswer{}
	}
	return &geoAnswer{ok: true, scope: scope, region: region, loc: loc}
}
