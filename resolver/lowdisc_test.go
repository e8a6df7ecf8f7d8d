package resolver

import (
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// lowDiscConfig is weightedConfig with low-discrepancy answers on: service
// w has a (weight 1) and b (weight 3), service w2 answers 2 of a, b, c
// (weights 1, 1, 2).
const lowDiscConfig = weightedConfig + `
[skew]
low_discrepancy = true
`

// slotClock is a fake clock standing at the start of a TTL slot; step
// moves it on by one TTL.
type slotClock struct {
	now time.Time
	ttl time.Duration
}

func newSlotClock(ttl uint32) *slotClock {
	return &slotClock{now: time.Unix(1_700_000_000, 0).Truncate(time.Duration(ttl) * time.Second), ttl: time.Duration(ttl) * time.Second}
}

func (c *slotClock) Now() time.Time { return c.now }
func (c *slotClock) step()          { c.now = c.now.Add(c.ttl) }

// identities returns n distinct resolver addresses.
func identities(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

// pickNames answers service svc once for source (no ECS) and returns the
// endpoint names in answer order.
func pickNames(t *testing.T, tb *table, svc *service, source netip.Addr, rnd rand64) []string {
	t.Helper()
	ch := tb.chooser(svc, source, netip.Prefix{}, rnd)
	var out [maxPick]*endpoint
	k, bits := svc.poolFor(dns.TypeA, 0).pick(svc.policy, svc.maxAnswers, &ch, &out)
	names := make([]string, k)
	var want uint64
	for i, e := range out[:k] {
		names[i] = e.name
		want |= e.bit
	}
	if bits != want {
		t.Fatalf("pick bits %b, want %b", bits, want)
	}
	return names
}

// countError is |count − N·share|.
func countError(count, n int, share float64) float64 {
	return math.Abs(float64(count) - float64(n)*share)
}

// TestWeylConstants checks the fixed-point constants against
// arbitrary-precision arithmetic: φ·2^64, frac(√p)·2^64, all distinct.
func TestWeylConstants(t *testing.T) {
	const prec = 256
	two64 := new(big.Float).SetPrec(prec).SetMantExp(big.NewFloat(1), 64)
	frac64 := func(x *big.Float) uint64 {
		i, _ := x.Int(nil)
		f := new(big.Float).SetPrec(prec).Sub(x, new(big.Float).SetInt(i))
		u, _ := f.Mul(f, two64).Uint64()
		return u
	}
	sqrt5 := new(big.Float).SetPrec(prec).Sqrt(big.NewFloat(5))
	phi := new(big.Float).SetPrec(prec).Sub(sqrt5, big.NewFloat(1))
	phi.Quo(phi, big.NewFloat(2))
	if got := frac64(phi); got != phi64 || weylSteps[0] != phi64 {
		t.Errorf("phi64 = %#x, weylSteps[0] = %#x, want %#x", uint64(phi64), weylSteps[0], got)
	}
	primes := []int64{2, 3, 7, 11, 13, 17, 19, 23}
	for i, p := range primes {
		want := frac64(new(big.Float).SetPrec(prec).Sqrt(new(big.Float).SetInt64(p)))
		if weylSteps[i+1] != want {
			t.Errorf("weylSteps[%d] = %#x, want frac(√%d)·2^64 = %#x", i+1, weylSteps[i+1], p, want)
		}
	}
	seen := map[uint64]bool{}
	for i, s := range weylSteps {
		if seen[s] || s == 0 {
			t.Errorf("weylSteps[%d] = %#x repeats or is 0", i, s)
		}
		seen[s] = true
	}
	// Position 0 is exactly frac(slot·φ + h/2^64) in fixed point.
	slot, h := uint64(7), uint64(12345)
	if got := WeylPoint(h, slot, 0); got != slot*phi64+h {
		t.Errorf("WeylPoint(12345, 7, 0) = %#x", got)
	}
}

// TestIdentityHash checks that every part of the identity matters, that
// IPv4-mapped addresses hash as IPv4, and that hashing does not allocate.
func TestIdentityHash(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.53")
	ecs := netip.MustParsePrefix("198.51.100.0/24")
	base := IdentityHash(src, 1, ecs)
	for name, h := range map[string]uint64{
		"source":  IdentityHash(netip.MustParseAddr("192.0.2.54"), 1, ecs),
		"service": IdentityHash(src, 2, ecs),
		"subnet":  IdentityHash(src, 1, netip.MustParsePrefix("198.51.101.0/24")),
		"scope":   IdentityHash(src, 1, netip.MustParsePrefix("198.51.100.0/23")),
		"no ecs":  IdentityHash(src, 1, netip.Prefix{}),
	} {
		if h == base {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
	if IdentityHash(netip.MustParseAddr("::ffff:192.0.2.53"), 1, ecs) != base {
		t.Error("an IPv4-mapped source hashes differently from its IPv4 address")
	}
	if a := testing.AllocsPerRun(100, func() { IdentityHash(src, 1, ecs) }); a != 0 {
		t.Errorf("IdentityHash allocates %.0f times", a)
	}
}

// TestLowDiscrepancyFixedIdentity follows one cache identity through 100
// consecutive TTL slots, for each of 2,000 identities: with weights 1:3
// its count of the weight-1 endpoint must be within 2 of 25 after 100
// slots (and within 3 of N/4 after every N ≤ 100), where independent
// random draws are off by about 3.5 on average.
func TestLowDiscrepancyFixedIdentity(t *testing.T) {
	const ids, slots = 2000, 100
	weyl := mustTable(t, mustConfig(t, lowDiscConfig), AllUp{})
	random := mustTable(t, mustConfig(t, weightedConfig), AllUp{})
	clock := newSlotClock(weyl.names["w.example.test."].service.ttl)
	weyl.now = clock.Now
	rnd := rand.New(rand.NewPCG(5, 6)).Uint64
	var sumWeyl, sumRandom, worstWeyl, worstPrefix float64
	for _, src := range identities(ids) {
		clock.now = time.Unix(1_700_000_000, 0).Truncate(clock.ttl)
		na, nr := 0, 0
		for n := 1; n <= slots; n++ {
			if pickNames(t, weyl, weyl.names["w.example.test."].service, src, nil)[0] == "a" {
				na++
			}
			if pickNames(t, random, random.names["w.example.test."].service, src, rnd)[0] == "a" {
				nr++
			}
			worstPrefix = max(worstPrefix, countError(na, n, 0.25))
			clock.step()
		}
		sumWeyl += countError(na, slots, 0.25)
		sumRandom += countError(nr, slots, 0.25)
		worstWeyl = max(worstWeyl, countError(na, slots, 0.25))
	}
	t.Logf("after %d slots, count error of the weight-1 endpoint over %d identities: low discrepancy mean %.2f, worst %.1f (worst over every prefix %.1f); random mean %.2f",
		slots, ids, sumWeyl/ids, worstWeyl, worstPrefix, sumRandom/ids)
	if worstWeyl > 2 {
		t.Errorf("low discrepancy: worst count error after %d slots %.1f, want ≤ 2", slots, worstWeyl)
	}
	if worstPrefix > 3 {
		t.Errorf("low discrepancy: worst count error over the first N ≤ %d slots %.1f, want ≤ 3", slots, worstPrefix)
	}
	if sumRandom < 4*sumWeyl {
		t.Errorf("low discrepancy mean error %.2f is not far below random's %.2f", sumWeyl/ids, sumRandom/ids)
	}
}

// TestLowDiscrepancyLongRun checks that across 10,000 identities the split
// still follows the weights (±2 pp), in one slot and over ten.
func TestLowDiscrepancyLongRun(t *testing.T) {
	tb := mustTable(t, mustConfig(t, lowDiscConfig), AllUp{})
	svc := tb.names["w.example.test."].service
	clock := newSlotClock(svc.ttl)
	tb.now = clock.Now
	for _, slots := range []int{1, 10} {
		counts := map[string]int{}
		total := 0
		for _, src := range identities(10_000) {
			clock.now = time.Unix(1_700_000_000, 0).Truncate(clock.ttl)
			for range slots {
				counts[pickNames(t, tb, svc, src, nil)[0]]++
				total++
				clock.step()
			}
		}
		for name, want := range map[string]float64{"a": 0.25, "b": 0.75} {
			if got := float64(counts[name]) / float64(total); math.Abs(got-want) > 0.02 {
				t.Errorf("%d slot(s): %s share %.4f, want %.2f ± 0.02", slots, name, got, want)
			}
		}
	}
}

// TestLowDiscrepancyHealth checks that health filtering comes first: a down
// endpoint is never answered, and the others split by their weights.
func TestLowDiscrepancyHealth(t *testing.T) {
	cfg := mustConfig(t, lowDiscConfig+`
[[services]]
name = "h.example.test."
policy = "weighted"
endpoints = [
  { name = "a", region = "r1", address = "192.0.2.1", weight = 1 },
  { name = "b", region = "r1", address = "192.0.2.2", weight = 5 },
  { name = "c", region = "r1", address = "192.0.2.3", weight = 3 },
]
`)
	tb := mustTable(t, cfg, downHealth{"b": true})
	svc := tb.names["h.example.test."].service
	clock := newSlotClock(svc.ttl)
	tb.now = clock.Now
	counts := map[string]int{}
	src := netip.MustParseAddr("192.0.2.53")
	for range 400 {
		counts[pickNames(t, tb, svc, src, nil)[0]]++
		clock.step()
	}
	if counts["b"] != 0 {
		t.Errorf("the down endpoint was answered %d times", counts["b"])
	}
	if e := countError(counts["a"], 400, 0.25); e > 2 {
		t.Errorf("a answered %d of 400 times, want 100 ± 2 (weights 1:3 among the up ones)", counts["a"])
	}
}

// TestLowDiscrepancyOffByDefault checks that without skew.low_discrepancy
// the draw is random: one identity in one slot gets both endpoints.
func TestLowDiscrepancyOffByDefault(t *testing.T) {
	tb := mustTable(t, mustConfig(t, weightedConfig), AllUp{})
	if tb.lowDisc {
		t.Fatal("low discrepancy on without skew.low_discrepancy")
	}
	svc := tb.names["w.example.test."].service
	tb.now = newSlotClock(svc.ttl).Now
	rnd := rand.New(rand.NewPCG(7, 8)).Uint64
	counts := map[string]int{}
	for range 400 {
		counts[pickNames(t, tb, svc, testClient, rnd)[0]]++
	}
	if counts["a"] < 50 || counts["b"] < 200 {
		t.Errorf("random answers to one identity in one slot: %v, want about 100 a and 300 b", counts)
	}
	// With it on, the same identity in the same slot always gets one answer.
	on := mustTable(t, mustConfig(t, lowDiscConfig), AllUp{})
	on.now = tb.now
	first := pickNames(t, on, on.names["w.example.test."].service, testClient, rnd)[0]
	for range 100 {
		if got := pickNames(t, on, on.names["w.example.test."].service, testClient, rnd)[0]; got != first {
			t.Fatalf("low discrepancy: %s then %s in one slot", first, got)
		}
	}
}

// TestLowDiscrepancySeveralAnswers checks the continuation for
// max_answers = 2 (weights 1:1:2): answers are distinct; across 10,000
// identities every ordered pair comes as often as with the sequential
// random draw (±2 pp); one identity over 100 slots keeps both positions'
// counts close to their expected shares.
func TestLowDiscrepancySeveralAnswers(t *testing.T) {
	tb := mustTable(t, mustConfig(t, lowDiscConfig), AllUp{})
	svc := tb.names["w2.example.test."].service
	clock := newSlotClock(svc.ttl)
	tb.now = clock.Now
	w := map[string]float64{"a": 1, "b": 1, "c": 2}
	pairs := map[string]int{}
	const ids = 10_000
	for _, src := range identities(ids) {
		got := pickNames(t, tb, svc, src, nil)
		if len(got) != 2 || got[0] == got[1] {
			t.Fatalf("want 2 distinct answers, got %v", got)
		}
		pairs[got[0]+got[1]]++
	}
	for i, wi := range w {
		for j, wj := range w {
			if i == j {
				continue
			}
			want := wi / 4 * wj / (4 - wi)
			if got := float64(pairs[i+j]) / ids; math.Abs(got-want) > 0.02 {
				t.Errorf("pair %s,%s: share %.4f, want %.4f ± 0.02", i, j, got, want)
			}
		}
	}
	// One identity through 100 slots: first answer c (share 1/2), second
	// answer c (share 1/4·2/3 + 1/4·2/3 = 1/3), against the random draw.
	random := mustTable(t, mustConfig(t, weightedConfig), AllUp{})
	rsvc := random.names["w2.example.test."].service
	rnd := rand.New(rand.NewPCG(9, 10)).Uint64
	const n = 200
	var worst, mean, meanRandom [2]float64
	for _, src := range identities(n) {
		clock.now = time.Unix(1_700_000_000, 0).Truncate(clock.ttl)
		var c, cr [2]int
		for range 100 {
			got, gotRandom := pickNames(t, tb, svc, src, nil), pickNames(t, random, rsvc, src, rnd)
			for pos := range 2 {
				if got[pos] == "c" {
					c[pos]++
				}
				if gotRandom[pos] == "c" {
					cr[pos]++
				}
			}
			clock.step()
		}
		for pos, share := range []float64{0.5, 1.0 / 3} {
			e := countError(c[pos], 100, share)
			worst[pos] = max(worst[pos], e)
			mean[pos] += e / n
			meanRandom[pos] += countError(cr[pos], 100, share) / n
		}
	}
	t.Logf("one identity over 100 slots, count error of c over %d identities: first answer mean %.2f worst %.1f (random mean %.2f), second answer mean %.2f worst %.1f (random mean %.2f)",
		n, mean[0], worst[0], meanRandom[0], mean[1], worst[1], meanRandom[1])
	if worst[0] > 2 || worst[1] > 5 {
		t.Errorf("worst count errors %.1f, want ≤ 2 for the first answer and ≤ 5 for the second", worst)
	}
	for pos := range 2 {
		if meanRandom[pos] < 2*mean[pos] {
			t.Errorf("answer %d: mean count error %.2f is not far below random's %.2f", pos+1, mean[pos], meanRandom[pos])
		}
	}
}

// TestLowDiscrepancyDoesNotAllocate guards the answer path with low
// discrepancy on (reading the clock and hashing the identity).
func TestLowDiscrepancyDoesNotAllocate(t *testing.T) {
	s, err := New(mustConfig(t, latencyBenchConfig+"\n[skew]\nlow_discrepancy = true\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, maxUDPPacket)
	var snt sent
	for _, pkt := range [][]byte{packQuery(t, "w.example.test.", dns.TypeA, false), packECSQuery(t, "lat.example.test.", "10.2.3.0/24")} {
		if n, _, _ := s.table.Load().fastAnswer(pkt, out, testClient, s.rnd, &snt); n == 0 {
			t.Fatal("fast path declined the query")
		}
		if a := testing.AllocsPerRun(200, func() { s.respondUDP(pkt, out, testClient, &snt) }); a != 0 {
			t.Errorf("low-discrepancy answer allocates %.1f times per query, want 0", a)
		}
	}
}

// TestCacheSubnet checks the subnet an answer is recorded and hashed under.
func TestCacheSubnet(t *testing.T) {
	v4 := netip.MustParseAddr("10.2.3.0")
	for _, c := range []struct {
		addr          netip.Addr
		source, scope uint8
		want          string
	}{
		{v4, 24, 16, "10.2.0.0/16"},
		{v4, 24, 24, "10.2.3.0/24"},
		{v4, 16, 24, "10.2.0.0/16"}, // RFC 7871 §7.3.1: never longer than the source
		{v4, 24, 0, "invalid Prefix"},
		{v4, 0, 24, "invalid Prefix"},
		{netip.Addr{}, 24, 24, "invalid Prefix"},
		{v4, 56, 56, "10.2.3.0/32"}, // an IPv4-mapped option: at most the address
		{netip.MustParseAddr("2001:db8:2:ff::"), 64, 48, "2001:db8:2::/48"},
	} {
		if got := cacheSubnet(c.addr, c.source, c.scope).String(); got != c.want {
			t.Errorf("cacheSubnet(%v, %d, %d) = %s, want %s", c.addr, c.source, c.scope, got, c.want)
		}
	}
}
