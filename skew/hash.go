package skew

import (
	"encoding/binary"
	"net/netip"
)

// The identity hash and the Weyl point are copies of resolver.IdentityHash
// and resolver.WeylPoint (position 0): the resolver answers with them and the
// simulator predicts those answers with these, so the two must stay
// identical bit for bit. TestHashMatchesResolver holds them together.

// phi64 is ⌊φ·2^64⌋ for φ = (√5−1)/2: the golden-ratio rotation in 64-bit
// fixed point.
const phi64 = 0x9E3779B97F4A7C15

// mix64 is the splitmix64 finalizer: a bijection of 64-bit words whose every
// output bit depends on every input bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// IdentityHash hashes a cache identity: the resolver's source address, the
// service's index in the configuration and the ECS subnet at the returned
// scope (the zero Prefix when there was none). It is deterministic (no seed),
// so every node gives an identity the same hash, and it does not allocate.
// IPv4 and IPv4-mapped IPv6 addresses hash alike.
func IdentityHash(source netip.Addr, service int, ecs netip.Prefix) uint64 {
	h := uint64(0x6d6572696469616e) // "meridian"
	a := source.Unmap().As16()
	h = mix64(h ^ binary.BigEndian.Uint64(a[:8]))
	h = mix64(h ^ binary.BigEndian.Uint64(a[8:]))
	h = mix64(h ^ uint64(service))
	if !ecs.IsValid() {
		return mix64(h)
	}
	e := ecs.Addr().Unmap().As16()
	h = mix64(h ^ binary.BigEndian.Uint64(e[:8]))
	h = mix64(h ^ binary.BigEndian.Uint64(e[8:]))
	return mix64(h ^ uint64(ecs.Bits()+1))
}

// WeylPoint is the low-discrepancy draw of SKEW.md: the point
// u = frac(slot·φ + identity/2^64) in [0, 1) for the identity hashed as
// identity in TTL slot slot (slot = ⌊t/τ⌋, see Slot). The endpoint whose
// cumulative-weight interval holds u is answered. It is computed in 64-bit
// fixed point, so it is exact and identical on every node.
func WeylPoint(identity uint64, slot uint64) float64 {
	return float64((slot*phi64+identity)>>11) / (1 << 53)
}

// Slot is the TTL slot ⌊t/τ⌋ of the Unix-nanosecond time at for a TTL of ttl
// seconds (0 counts as 1).
func Slot(at int64, ttl uint32) uint64 {
	return uint64(at) / (uint64(max(ttl, 1)) * 1e9)
}

// serviceSalt hashes a service name: identities are keyed by service name
// (not index) inside the recorder, so a reload that reorders services keeps
// them, and nodes whose configurations list services in another order agree.
func serviceSalt(name string) uint64 {
	h := uint64(0x736b657773616c74) // "skewsalt"
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 0x100000001b3
	}
	return mix64(h)
}

// identityKey is the recorder's key of a cache identity of the service whose
// salt is salt.
func identityKey(source netip.Addr, salt uint64, ecs netip.Prefix) uint64 {
	return mix64(IdentityHash(source, 0, ecs) ^ salt)
}
