package skew

// Per-identity demand and TTL behaviour (SKEW.md "The report").
//
// A cache whose answer expired at t asks again at t + τ + X, X exponential
// with the client lookup rate λ behind it. From the merged sequence of one
// identity's answers:
//
//   - gaps g shorter than 0.5τ (τ: the TTL sent) are "short": retries, or
//     several caches behind one address. More than 20 % short gaps (and at
//     least two) marks the identity pooled.
//   - floor = the 2nd-smallest gap ≥ 0.5τ (robust to one early outlier).
//     Prefetching: floor in [0.8τ, 0.98τ). Clamped: floor ≥ 1.5τ, ≥ 3 long
//     gaps and the honour hypothesis rejected at p < 0.01. SKEW.md writes
//     the test as exp(−m·λ₁·(floor − τ)) < 0.01; we use its exact form: under
//     honour the excesses X_i = g_i − τ of the m long gaps are i.i.d.
//     exponential, so R = m·min X / Σ X is Beta(1, m−1) and
//     P(R ≥ r) = (1 − r)^(m−1) — free of the unknown λ, which the
//     plug-in form needs and which a clamp inflates. With m = 4 gaps of a
//     300-s clamp on a 30-s TTL, p ≈ 1e−6, while the plug-in form cannot go
//     below e^−4 ≈ 0.018 with four gaps and so misses every such clamper.
//   - demand: the refresh floor τ̂ is τ itself when the identity honours
//     the TTL, else the observed floor. With k i.i.d. exponential excesses
//     (honour: all m long gaps, X = g − τ; otherwise the m − 2 gaps above
//     the floor, X = g − floor, since by memorylessness those are i.i.d.
//     above the 2nd order statistic) λ̂ = (k−1)/max(ΣX, k·δ), unbiased,
//     with variance λ̂²/(k−2). Below k·δ the identity is saturated and
//     λ̂ only a lower bound. δ = 50 ms is the timing resolution. Excesses
//     implausible for the demand (holes in the sequence) are left out (see
//     kept): k counts the others.
//   - fewer than 3 long gaps (or fewer than 3 excesses): λ̂ = q/max(1 − q·τ̂,
//     ε) from the query rate q over what was seen of it (τ̂: the TTL, or the
//     smallest gap when longer), taken as a bound (×1/4 .. ×4, widened to
//     the Gamma bounds of the excesses there are), not a measurement. With
//     3 to 9 excesses λ̂ is the gap estimate within Gamma bounds (a normal
//     error would be too narrow).
//   - pooled: m̂ = the most answers in any 0.8τ-long interval is a lower
//     bound on the caches behind the address (one cache asks at most once
//     per τ, the margin absorbs jitter); each then asks at q/m̂, so
//     λ̂ = m̂·λ_c with
//     λ_c = 1/max(m̂/q − τ, δ). Lower bound q (every query is at least one
//     client lookup), upper prior m̂/δ.
//
// The upper prior of a saturated identity is 8× its lower bound: a cache
// whose excess is below the timing resolution carries at least 1/δ lookups
// a second; 8/δ = 160/s per cache is a generous ceiling for one resolver
// cache and one name.

import (
	"math"
	"net/netip"
	"slices"
)

// delta is the timing resolution δ of gap measurements, in seconds.
const delta = 0.05

// saturatedPrior is the upper prior of a saturated identity, as a multiple
// of its lower bound.
const saturatedPrior = 8.0

// Demand classes of an identity.
const (
	classHonour    = "honour"
	classPrefetch  = "prefetch"
	classClamped   = "clamped"
	classPooled    = "pooled"
	classSaturated = "saturated"
	classFew       = "few-gaps"
)

// ident is one cache identity's merged answers and what the report infers
// from them.
type ident struct {
	key uint64
	src netip.Addr
	ecs netip.Prefix
	ev  []idEvent
	pro profile // the long-term profile before the ring (zero: none)

	tau      float64 // TTL sent (median), seconds
	long     []float64
	short    int
	nLong    float64 // long gaps, with the profile's
	nShort   float64
	floor    float64 // seconds; 0 when there is no long gap
	pValue   float64 // of the honour hypothesis (clamp test); 1 when untested
	class    string
	life     float64 // how long a cache holds an answer at most: max(τ, clamp)
	lam      float64 // λ̂, lookups per second
	lamLo    float64
	lamHi    float64
	lamVar   float64 // sampling variance of lam (0 for bounded identities)
	bounded  bool    // lam is only known within [lamLo, lamHi]
	gapCount float64 // i.i.d. excesses behind lam
	base     float64 // what the excesses are measured from: τ, or the floor
	shifted  bool    // base is the floor
	cens     float64 // where excesses are cut (see kept)
	// perCache scales lam to the rate behind one answer: 1/m̂ for a pooled
	// identity, whose m̂ caches each hold their own answer for a full τ
	// (pooled answers are not cut short by the next query, which is
	// another cache's), 1 otherwise.
	perCache float64
	pooled   bool
}

// precise reports whether the identity's demand is measured, not bounded,
// to within a relative standard error of 25 % (k ≥ 18 excesses).
func (id *ident) precise() bool {
	return !id.bounded && id.gapCount >= 18
}

// rate is the lookup rate behind one of the identity's answers when the
// identity's demand is lam.
func (id *ident) rate(lam float64) float64 { return lam * id.perCache }

// analyze fills in the identity's TTL behaviour and demand, now being the
// report time.
func (id *ident) analyze(now int64) {
	id.gaps()
	id.tau = medianTTL(id.ev)
	id.nLong = float64(len(id.long)) + id.pro.n
	id.nShort = float64(id.short) + id.pro.short
	id.pValue, id.perCache = 1, 1
	id.floor = id.secondSmallest()
	// A cache holds an answer for its refresh floor at most: the TTL, or
	// the smallest gap seen when every gap is longer (a clamp not yet
	// proven keeps the answer that long too; the next query ends it
	// anyway).
	id.life = max(id.tau, id.smallest())
	switch {
	case id.nShort >= 2 && id.nShort > 0.2*(id.nShort+id.nLong):
		id.class, id.pooled, id.life = classPooled, true, id.tau
		id.poolDemand(now)
	case id.nLong >= 3:
		id.gapDemand()
	default:
		id.fewDemand(now)
	}
}

// gaps splits the identity's gaps since its profile into long ones (sorted)
// and a count of short ones. A gap across answers this report never saw
// (before a node's log opened, Event.First) is kept: it is too long, and
// kept() leaves such holes out of λ̂ when they are implausible, while most
// gaps that end at a First event are whole.
func (id *ident) gaps() {
	id.long = id.long[:0]
	id.short = 0
	for i := 1; i < len(id.ev); i++ {
		if id.ev[i].at < id.pro.until {
			continue
		}
		g := float64(id.ev[i].at-id.ev[i-1].at) / 1e9
		if g < 0.5*float64(max(id.ev[i-1].ttl, 1)) {
			id.short++
		} else {
			id.long = append(id.long, g)
		}
	}
	slices.Sort(id.long)
}

// smallest returns the smallest long gap (ring and profile); 0 when none.
func (id *ident) smallest() float64 {
	c := id.candidates()
	if len(c) == 0 {
		return 0
	}
	return c[0]
}

// secondSmallest is the refresh floor: the 2nd-smallest long gap (the
// smallest when there is one).
func (id *ident) secondSmallest() float64 {
	c := id.candidates()
	switch len(c) {
	case 0:
		return 0
	case 1:
		return c[0]
	}
	return c[1]
}

// candidates returns the two smallest long gaps of the ring and the
// profile, sorted.
func (id *ident) candidates() []float64 {
	c := make([]float64, 0, 4)
	c = append(c, id.long[:min(2, len(id.long))]...)
	for _, g := range id.pro.mins {
		if g > 0 {
			c = append(c, g)
		}
	}
	slices.Sort(c)
	return c
}

// rawExcess returns Σ(g − τ) over the long gaps of the ring and the
// profile.
func (id *ident) rawExcess(tau float64) float64 {
	var sum float64
	for _, g := range id.long {
		sum += g - tau
	}
	if id.pro.n > 0 {
		sum += id.pro.sumG - tau*id.pro.n
	}
	return sum
}

// kept returns the count d and the sum S of the ring's excesses over base
// that are kept: X = g − base for the long gaps (above base when shifted:
// the floor's own gaps are not i.i.d.), less those at or above c.
//
// Dropping implausible excesses makes λ̂ robust to holes: answers missing
// from the sequence — sent by a node that did not hold the identity yet,
// evicted meanwhile, or dropped by the event budget. A hole makes one gap a
// whole floor longer; taken as an exponential excess it adds that floor to
// ΣX and collapses λ̂ of a busy cache (one hole in an hour took a 10/s
// cache to 0.4/s in the simulator). It is not an observation of the
// demand at all, so it is left out. c is where an excess becomes
// implausible for the demand itself, 7/λ (probability e^−7 ≈ 0.1 %, so
// truncating there biases λ̂ by under 1 %), and at least half the floor (a
// hole adds a whole floor): a busy cache's holes go, a light cache's long
// gaps, which are its demand, stay.
func (id *ident) kept(base float64, shifted bool, c float64) (d, sum float64) {
	for _, g := range id.long {
		x := g - base
		if shifted && x <= 0 {
			continue
		}
		if x = max(x, 0); x < c {
			sum += x
			d++
		}
	}
	return d, sum
}

// medianRate is ln 2 over the median excess of the ring's long gaps over
// the base (0 when there is none).
func (id *ident) medianRate() float64 {
	xs := make([]float64, 0, len(id.long))
	for _, g := range id.long {
		if x := g - id.base; x > 0 || !id.shifted {
			xs = append(xs, max(x, 0))
		}
	}
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if m := xs[len(xs)/2]; m > 0 {
		return math.Ln2 / m
	}
	return 1 / delta
}

// cutAt is where excesses are dropped for an identity whose demand is about
// lam with refresh base base.
func cutAt(base, lam float64) float64 {
	c := max(0.5*base, 1)
	if lam > 0 {
		c = max(c, 7/lam)
	}
	return c
}

// gapDemand estimates λ from three or more long gaps.
func (id *ident) gapDemand() {
	tau, m := id.tau, id.nLong
	if sumEx := id.rawExcess(tau); id.floor >= 1.5*tau && sumEx > 0 {
		r := m * (id.smallest() - tau) / sumEx
		id.pValue = math.Pow(max(1-r, 0), m-1)
	}
	shifted := false
	switch {
	case id.floor >= 1.5*tau && id.pValue < 0.01:
		id.class, shifted = classClamped, true
	case id.floor >= 0.8*tau && id.floor < 0.98*tau:
		id.class, shifted = classPrefetch, true
	case id.floor < 0.8*tau:
		id.class, shifted = classHonour, true // early refreshes of no known kind
	default:
		id.class = classHonour
	}
	id.base, id.shifted = tau, false
	if shifted {
		id.base, id.shifted = id.floor, true
	}
	// Drop excesses implausible for the estimated demand. The first
	// estimate comes from the median excess (ln 2/λ for an exponential),
	// which holes cannot drag while they are fewer than half the gaps;
	// three rounds then settle it.
	lam := id.medianRate()
	var d, sum float64
	for round := 0; round < 3; round++ {
		id.cens = cutAt(id.base, lam)
		d, sum = id.kept(id.base, id.shifted, id.cens)
		if id.pro.sameBase(id.base, id.shifted) {
			d += id.pro.d
			sum += id.pro.sumX
		}
		if d < 2 || sum <= 0 {
			break
		}
		lam = (d - 1) / sum
	}
	k := d
	id.gapCount = k
	c := k - 1
	if k < 3 {
		// One or two excesses: 1/X is too wild for a point (an excess
		// of 40 ms would say 25 lookups a second). Take the query-rate
		// estimate, and let the bracket span both it and the Gamma bounds.
		class := id.class
		id.fewDemand(id.ev[len(id.ev)-1].at)
		id.class = class
		if n := int(k); n >= 1 && sum > 0 {
			id.lamLo = min(id.lamLo, gamma95[n][0]/sum)
			id.lamHi = max(id.lamHi, gamma95[n][1]/sum)
		}
		return
	}
	if sum < k*delta {
		id.class = classSaturated
		id.lam = c / (k * delta)
		id.lamLo, id.lamHi, id.bounded = id.lam, saturatedPrior*id.lam, true
		return
	}
	id.lam = c / sum
	id.lamLo, id.lamHi = id.lam, id.lam
	id.lamVar = id.lam * id.lam / max(k-2, 1)
	if n := int(k); n < len(gamma95) {
		// Too few excesses for a normal error: λ·ΣX is Gamma(k, 1), so
		// λ lies in [q₀.₀₂₅, q₀.₉₇₅]/ΣX with 95 % probability; the
		// identity enters the bracket as a bound.
		q := gamma95[max(n, 1)]
		id.lamLo, id.lamHi, id.bounded, id.lamVar = q[0]/sum, q[1]/sum, true, 0
	}
}

// gamma95 holds the 2.5 % and 97.5 % quantiles of Gamma(k, 1) (χ²(2k)/2)
// for k = 1..9.
var gamma95 = [10][2]float64{
	{}, {0.0253, 3.6889}, {0.2422, 5.5716}, {0.6187, 7.2247}, {1.0899, 8.7673},
	{1.6235, 10.2416}, {2.2019, 11.6683}, {2.8143, 13.0595}, {3.4538, 14.4227}, {4.1154, 15.7632},
}

// fewDemand estimates λ from the query rate when there are fewer than three
// long gaps; the result is a bound, not a measurement.
func (id *ident) fewDemand(now int64) {
	id.class = classFew
	tau := max(id.tau, id.smallest(), 1) // a clamp not yet proven refreshes no sooner
	first, last := id.ev[0].at, id.ev[len(id.ev)-1].at
	span := float64(max(now, last)-first)/1e9 + tau
	q := float64(len(id.ev)) / span
	const eps = 0.05
	id.lam = q / max(1-q*tau, eps)
	id.lamLo, id.lamHi, id.bounded = id.lam/4, id.lam*4, true
}

// poolDemand estimates λ of a pooled identity (several caches behind one
// address).
func (id *ident) poolDemand(now int64) {
	tau := max(id.tau, 1)
	first, last := id.ev[0].at, id.ev[len(id.ev)-1].at
	n := float64(len(id.ev))
	q := n / (float64(max(now, last)-first)/1e9 + tau)
	if len(id.ev) >= 3 {
		q = (n - 1) / (float64(last-first) / 1e9)
	}
	caches := float64(maxInInterval(id.ev, int64(0.8*tau*1e9)))
	perCache := 1 / max(caches/q-tau, delta)
	id.perCache = 1 / caches
	id.lam = max(caches*perCache, q)
	id.lamLo = q
	id.lamHi = max(caches/delta, id.lam)
	id.bounded = true
}

// maxInInterval returns the most events in any half-open interval of length
// d (events sorted by time).
func maxInInterval(ev []idEvent, d int64) int {
	best, j := 0, 0
	for i := range ev {
		for ev[i].at-ev[j].at >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// medianTTL returns the median TTL of the events, in seconds.
func medianTTL(ev []idEvent) float64 {
	if len(ev) == 0 {
		return 1
	}
	t := make([]uint32, len(ev))
	for i, e := range ev {
		t[i] = e.ttl
	}
	slices.Sort(t)
	return float64(max(t[len(t)/2], 1))
}
