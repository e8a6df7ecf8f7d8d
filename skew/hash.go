package skew

import (
	"net/netip"

	"meridian/internal/cacheid"
)

// mix64 and phi64 are cacheid's, the functions the resolver answers with.
const phi64 = cacheid.Phi64

func mix64(x uint64) uint64 { return cacheid.Mix64(x) }

// IdentityHash hashes a cache identity: the resolver's source address, the
// service's index in the configuration and the ECS subnet at the returned
// scope (the zero Prefix when there was none). It is cacheid.Hash, the hash
// the resolver's low-discrepancy answers use, so the simulator predicts them.
func IdentityHash(source netip.Addr, service int, ecs netip.Prefix) uint64 {
	return cacheid.Hash(source, service, ecs)
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
