// Package cacheid hashes a resolver cache's identity — the resolver's source
// address, the service and the ECS subnet at the returned scope — the one
// way both the resolver (for low-discrepancy answers) and the skew package
// (which predicts and keys those caches) need it. Sharing one function keeps
// the two bit-for-bit identical on every node.
package cacheid

import (
	"encoding/binary"
	"net/netip"
)

// Phi64 is ⌊φ·2^64⌋ for φ = (√5−1)/2: the golden-ratio rotation of the
// Weyl sequence in SKEW.md, in 64-bit fixed point.
const Phi64 = 0x9E3779B97F4A7C15

// Mix64 is the splitmix64 finalizer: a bijection of 64-bit words whose every
// output bit depends on every input bit.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Hash hashes a cache identity: the resolver's source address, the service's
// index in the configuration and the ECS subnet at the returned scope (the
// zero Prefix when there was none). It is deterministic (no seed), so every
// node gives an identity the same hash, and it does not allocate. IPv4 and
// IPv4-mapped IPv6 addresses hash alike.
func Hash(source netip.Addr, service int, ecs netip.Prefix) uint64 {
	h := uint64(0x6d6572696469616e) // "meridian"
	a := source.Unmap().As16()
	h = Mix64(h ^ binary.BigEndian.Uint64(a[:8]))
	h = Mix64(h ^ binary.BigEndian.Uint64(a[8:]))
	h = Mix64(h ^ uint64(service))
	if !ecs.IsValid() {
		return Mix64(h)
	}
	e := ecs.Addr().Unmap().As16()
	h = Mix64(h ^ binary.BigEndian.Uint64(e[:8]))
	h = Mix64(h ^ binary.BigEndian.Uint64(e[8:]))
	return Mix64(h ^ uint64(ecs.Bits()+1))
}
