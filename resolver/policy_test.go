package resolver

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/config"
)

// weightedConfig has one weighted service with endpoints a (weight 1) and
// b (weight 3), plus a failover and a multivalue service.
const weightedConfig = `
[node]
name = "t1"
region = "r1"
[regions.r1]
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "w.example.test."
policy = "weighted"
endpoints = [
  { name = "a", region = "r1", address = "192.0.2.1", weight = 1 },
  { name = "b", region = "r1", address = "192.0.2.2", weight = 3 },
]
[[services]]
name = "w2.example.test."
policy = "weighted"
max_answers = 2
endpoints = [
  { name = "a", region = "r1", address = "192.0.2.1", weight = 1 },
  { name = "b", region = "r1", address = "192.0.2.2", weight = 1 },
  { name = "c", region = "r1", address = "192.0.2.3", weight = 2 },
]
`

func mustConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), filepath.Join(t.TempDir(), "config.toml"))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

func mustTable(t testing.TB, cfg *config.Config, h Health) *table {
	t.Helper()
	tb, err := compile(cfg, h, NewMetrics(nil), nil)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return tb
}

// TestWeightedDistribution draws 10,000 answers with seeded randomness and
// checks that weights 1:3 give shares 25 % and 75 % within 2 points.
func TestWeightedDistribution(t *testing.T) {
	tb := mustTable(t, mustConfig(t, weightedConfig), AllUp{})
	rnd := rand.New(rand.NewPCG(1, 2)).Uint64
	counts := map[string]int{}
	const n = 10000
	for range n {
		rrs, _ := tb.names["w.example.test."].service.records(dns.TypeA, 0, &chooser{rnd: rnd})
		if len(rrs) != 1 {
			t.Fatalf("got %d answers, want 1", len(rrs))
		}
		counts[rrs[0].(*dns.A).A.String()]++
	}
	for addr, want := range map[string]float64{"192.0.2.1": 0.25, "192.0.2.2": 0.75} {
		if got := float64(counts[addr]) / n; math.Abs(got-want) > 0.02 {
			t.Errorf("%s share = %.3f, want %.2f ± 0.02", addr, got, want)
		}
	}
}

// TestWeightedWithoutReplacement checks two answers are always distinct and
// that the heavier endpoint appears in more of them.
func TestWeightedWithoutReplacement(t *testing.T) {
	tb := mustTable(t, mustConfig(t, weightedConfig), AllUp{})
	rnd := rand.New(rand.NewPCG(3, 4)).Uint64
	seen := map[string]int{}
	for range 5000 {
		rrs, _ := tb.names["w2.example.test."].service.records(dns.TypeA, 0, &chooser{rnd: rnd})
		if len(rrs) != 2 || rrs[0].String() == rrs[1].String() {
			t.Fatalf("want 2 distinct answers, got %v", rrs)
		}
		for _, rr := range rrs {
			seen[rr.(*dns.A).A.String()]++
		}
	}
	if seen["192.0.2.3"] <= seen["192.0.2.1"] || seen["192.0.2.3"] <= seen["192.0.2.2"] {
		t.Errorf("weight 2 endpoint should appear most often: %v", seen)
	}
}

// downHealth reports the named endpoints down.
type downHealth map[string]bool

func (d downHealth) Up(_, endpoint string) bool { return !d[endpoint] }

func (downHealth) RTT(string, string, string) (time.Duration, bool) { return 0, false }

// testClient is the source address of queries in internal tests.
var testClient = netip.MustParseAddr("192.0.2.53")

func TestPoolRules(t *testing.T) {
	cfg := mustConfig(t, weightedConfig+`
[[services]]
name = "f.example.test."
policy = "failover"
endpoints = [
  { name = "p1", region = "r1", address = "192.0.2.11", priority = 1 },
  { name = "p2", region = "r1", address = "192.0.2.12", priority = 2 },
  { name = "p3", region = "r1", address = "192.0.2.13", priority = 2, weight = 0 },
]
[[services]]
name = "z.example.test."
endpoints = [
  { name = "main", region = "r1", address = "192.0.2.21", weight = 5 },
  { name = "spare", region = "r1", address = "192.0.2.22", weight = 0 },
]
`)
	cases := []struct {
		name, service string
		down          []string
		want          []string // endpoint names in the pool
		failOpen      bool
	}{
		{"failover lowest priority", "f.example.test.", nil, []string{"p1"}, false},
		{"failover next priority", "f.example.test.", []string{"p1"}, []string{"p2"}, false},
		{"failover zero weight last", "f.example.test.", []string{"p1", "p2"}, []string{"p3"}, false},
		{"fail open", "f.example.test.", []string{"p1", "p2", "p3"}, []string{"p1"}, true},
		{"zero weight unused", "z.example.test.", nil, []string{"main"}, false},
		{"zero weight when alone", "z.example.test.", []string{"main"}, []string{"spare"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := downHealth{}
			for _, d := range c.down {
				h[d] = true
			}
			p := mustTable(t, cfg, h).names[c.service].service.pools[famA]
			var got []string
			for _, e := range p.ends {
				got = append(got, e.name)
			}
			if !equalStrings(got, c.want) || p.failOpen != c.failOpen {
				t.Errorf("pool = %v (fail open %v), want %v (fail open %v)", got, p.failOpen, c.want, c.failOpen)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
