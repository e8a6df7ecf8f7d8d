package resolver

// Low-discrepancy answers (SKEW.md, "Cheap correction").
//
// A resolver cache asks at most once per TTL and hands its one answer to
// every client behind it, so a weighted policy that draws independently per
// query leaves each cache's split to chance: after m answers the share of
// endpoint e is off by about sqrt(π_e(1−π_e)/m). With skew.low_discrepancy
// the draw is replaced, for the cache identity r = (resolver source address,
// service, ECS subnet at the returned scope), by the Weyl sequence
//
//	slot = ⌊t/τ⌋   (τ: the TTL sent; t: the query time, Unix)
//	u    = frac(slot·φ + hash(r)/2^64),  φ = (√5−1)/2
//
// and the endpoint whose cumulative-weight interval (over the endpoints left
// after health filtering, in configuration order) holds u is answered.
// This replaces every weighted draw: the weighted policy, the draw by
// weight within a failover priority and within the tie band of latency
// (whose identity includes the ECS subnet the placement used). A pool of
// one endpoint draws nothing; multivalue keeps its random shuffle.
// {slot·φ} is equidistributed (Weyl 1916) with the smallest discrepancy of
// any rotation (φ's continued fraction is all ones; three-gap theorem), so
// in any run of consecutive slots each endpoint gets its weighted count to
// within about one answer, while across identities the hash spreads the
// starting points, keeping the long-run split equal to the weights.
//
// Arithmetic is in 64-bit fixed point: u·2^64 = slot·⌊φ·2^64⌋ + hash(r)
// (mod 2^64), and the chosen point of [0, W) for total weight W is
// ⌊u·W⌋, the high word of the 128-bit product.
//
// Several answers (max_answers > 1, drawn without replacement): answer i
// (from 0) uses its own coordinate u_i of a Kronecker sequence,
// u_i = frac(slot·α_i + h_i/2^64), with α_0 = φ (so the first answer is the
// sequence above) and α_i = frac(√p_i) for the primes 2, 3, 7, 11, 13, …
// (5 left out: √5 is φ's). 1, √5 and the square roots of distinct primes
// are linearly independent over the rationals, so the points (u_0, …, u_k−1)
// are equidistributed in the unit cube (Weyl's criterion); each is then
// used as the uniform draw of the usual sequential weighted draw without
// replacement (u_i picks among the endpoints not yet chosen by their
// remaining weight). So the long-run frequency of every ordered answer
// equals that of the random draw, and each position on its own is a
// one-dimensional low-discrepancy sequence. h_0 = hash(r) and
// h_i = mix64(hash(r) + i).
//
// The skew package's simulator keeps its own copy of IdentityHash and
// WeylPoint (it does not import the resolver): the two must stay
// identical, bit for bit, or the simulator stops predicting what nodes
// answer.

import (
	"math/big"
	"math/bits"
	"net/netip"
	"time"

	"meridian/internal/cacheid"
)

// phi64 is ⌊φ·2^64⌋ for φ = (√5−1)/2: the golden-ratio rotation in 64-bit
// fixed point.
const phi64 = cacheid.Phi64

// weylSteps[i] is α_i·2^64 for answer position i: phi64 for 0, then
// ⌊frac(√p)·2^64⌋ for the primes p other than 5, in order.
var weylSteps = func() [maxPick]uint64 {
	var steps [maxPick]uint64
	steps[0] = phi64
	i := 1
	for p := int64(2); i < maxPick; p++ {
		if p == 5 || !big.NewInt(p).ProbablyPrime(0) {
			continue
		}
		steps[i] = fracSqrt64(p)
		i++
	}
	return steps
}()

// fracSqrt64 returns ⌊frac(√p)·2^64⌋, exactly (p is not a square).
func fracSqrt64(p int64) uint64 {
	// ⌊√(p·2^128)⌋ = ⌊√p·2^64⌋; its low 64 bits are the fraction.
	x := new(big.Int).Lsh(big.NewInt(p), 128)
	x.Sqrt(x)
	mask := new(big.Int).SetUint64(^uint64(0))
	return x.And(x, mask).Uint64()
}

// mix64 is cacheid's splitmix64 finalizer.
func mix64(x uint64) uint64 { return cacheid.Mix64(x) }

// IdentityHash hashes a cache identity: the resolver's source address, the
// service's index in config.Services and the ECS subnet at the returned
// scope (the zero Prefix when the query had none, or the scope was 0) — the
// arguments AnswerRecorder.RecordAnswer receives. It is cacheid.Hash, shared
// with the skew package, so every node of a cluster gives an identity the
// same sequence; it does not allocate.
func IdentityHash(source netip.Addr, service int, ecs netip.Prefix) uint64 {
	return cacheid.Hash(source, service, ecs)
}

// WeylPoint returns the uniform point of answer position i (0: the first
// answer) for the identity hashed as identity in TTL slot slot, as a 64-bit
// fixed-point fraction (u·2^64). Position 0 is frac(slot·φ +
// identity/2^64); see the comment at the top of lowdisc.go for the others.
// i must be below 64.

func WeylPoint(identity, slot uint64, i int) uint64 {
	if i == 0 {
		return slot*phi64 + identity
	}
	return slot*weylSteps[i] + mix64(identity+uint64(i))
}

// chooser supplies the draws a weighted pick makes: random, or, with low
// discrepancy on, the Weyl points of the asking cache identity in the
// current TTL slot. The identity is hashed and the clock read at the first
// draw, so that a pool of one endpoint costs neither.
type chooser struct {
	rnd  rand64
	weyl bool
	// The identity and the slot's inputs, for weyl.
	now     func() time.Time
	source  netip.Addr
	service int
	ecs     netip.Prefix
	ttl     uint32
	// Set at the first weyl draw.
	ready          bool
	identity, slot uint64
}

// below returns answer position i's draw in [0, n).
func (c *chooser) below(i int, n uint64) uint64 {
	if !c.weyl {
		return c.rnd() % n
	}
	if !c.ready {
		c.identity = IdentityHash(c.source, c.service, c.ecs)
		c.slot = weylSlot(c.now().UnixNano(), c.ttl)
		c.ready = true
	}
	hi, _ := bits.Mul64(WeylPoint(c.identity, c.slot, i), n)
	return hi
}

// weylSlot is ⌊t/τ⌋ for t in Unix nanoseconds and a TTL of ttl seconds.
func weylSlot(unixNano int64, ttl uint32) uint64 {
	return uint64(unixNano) / (uint64(max(ttl, 1)) * 1e9)
}
