package sim

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"meridian/skew"
)

const (
	minute = int64(time.Minute)
	window = 5 * time.Minute
)

func weighted2() skew.Service {
	return skew.Service{Name: "api.gslb.example.test.", Policy: "weighted", TTL: 30, Endpoints: []skew.Endpoint{
		{Name: "use1", Region: "us-east", Weight: 1, Capacity: 1},
		{Name: "euw1", Region: "eu-west", Weight: 1, Capacity: 1},
	}}
}

// latency3 is a latency-routed service whose capacities ask for 40/40/20.
func latency3() skew.Service {
	return skew.Service{Name: "app.gslb.example.test.", Policy: "latency", TTL: 30, Endpoints: []skew.Endpoint{
		{Name: "use1", Region: "us-east", Weight: 1, Capacity: 2},
		{Name: "euw1", Region: "eu-west", Weight: 1, Capacity: 2},
		{Name: "aps1", Region: "ap-south", Weight: 1, Capacity: 1},
	}}
}

// prefer3 sends each client region to its own endpoint first, then the
// others.
var prefer3 = [][]int{{0, 1, 2}, {1, 0, 2}, {2, 1, 0}}

// regionByRank spreads resolvers over three client regions 40/40/20.
func regionByRank(rank int) int { return [5]int{0, 1, 0, 1, 2}[rank%5] }

// mixed is the TTL behaviour mix of ISP resolvers in most scenarios.
var mixed = Mix{Clamp60: 0.05, Clamp300: 0.05, Clamp600: 0.02, Prefetch: 0.1}

// population builds the standard population: n Zipf(alpha) ISP resolvers
// carrying total lookups/s, a public resolver with ECS (10 % of it, 200
// client subnets) and one without (5 %, 4 pooled caches).
func population(seed uint64, n int, alpha, total float64, region func(int) int) *Population {
	rnd := rand.New(rand.NewPCG(seed, 99))
	pop := &Population{}
	pop.AddZipf(rnd, n, alpha, total, region, mixed)
	pop.AddPublicECS(200, total/10, region)
	pop.AddPooled(4, total/20, region(0))
	return pop
}

// result is one evaluated window.
type result struct {
	now             int64
	truth, est, ans []float64
	lo, hi          []float64
	unattrib        float64
	rep             *skew.Report
}

// run steps s through windows 5-minute windows and evaluates the 5-minute
// report at each window's end.
func run(t *testing.T, s *Sim, windows int) []result {
	t.Helper()
	var out []result
	for i := 0; i < windows; i++ {
		now := s.Step()
		rep, err := s.Report(window, now)
		if err != nil {
			t.Fatal(err)
		}
		_, truth := s.Truth(now-int64(window), now)
		r := result{now: now, truth: truth, unattrib: rep.Unattrib, rep: rep}
		for _, e := range rep.Endpoints {
			r.est = append(r.est, e.Estimated)
			r.ans = append(r.ans, e.Answered)
			r.lo = append(r.lo, e.Lo)
			r.hi = append(r.hi, e.Hi)
		}
		out = append(out, r)
	}
	return out
}

func covers(r result) bool {
	for j := range r.truth {
		if r.truth[j] < r.lo[j]-1e-9 || r.truth[j] > r.hi[j]+1e-9 {
			return false
		}
	}
	return true
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	c := append([]float64(nil), v...)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c[len(c)/2]
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

// sortBy sorts idx by key (ascending).
func sortBy(idx []int, key func(int) float64) {
	sort.Slice(idx, func(a, b int) bool { return key(idx[a]) < key(idx[b]) })
}
