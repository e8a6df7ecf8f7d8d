package resolver_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/internal/dnstest"
)

// latencyConfig has three regions with locations, client networks for two
// of them, and a latency service with one endpoint per region. The node is
// in us-east.
const latencyConfig = `
[node]
name = "n1"
region = "us-east"
[regions.us-east]
location = [39.04, -77.49]
networks = ["10.1.0.0/16"]
[regions.eu-west]
location = [53.35, -6.26]
networks = ["10.2.0.0/16", "10.2.3.0/24", "2001:db8:2::/48"]
[regions.ap-south]
location = [19.08, 72.88]
networks = ["10.3.0.0/16"]
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "latency"
latency_tolerance = "10ms"
endpoints = [
  { name = "use1", region = "us-east",  address = "192.0.2.1" },
  { name = "euw1", region = "eu-west",  address = "192.0.2.2" },
  { name = "aps1", region = "ap-south", address = "192.0.2.3" },
]
`

// rttHealth is a test Health: RTTs by (endpoint, region) and a down set.
type rttHealth struct {
	rtt  map[[2]string]time.Duration
	down map[string]bool
}

func (h rttHealth) Up(_, endpoint string) bool { return !h.down[endpoint] }

func (h rttHealth) RTT(_, endpoint, region string) (time.Duration, bool) {
	d, ok := h.rtt[[2]string{endpoint, region}]
	return d, ok
}

// measured: each region's own endpoint is nearest, except that from
// ap-south the eu-west endpoint is nearer than ap-south's own.
func measured(down ...string) rttHealth {
	h := rttHealth{rtt: map[[2]string]time.Duration{}, down: map[string]bool{}}
	set := func(region string, use1, euw1, aps1 time.Duration) {
		h.rtt[[2]string{"use1", region}], h.rtt[[2]string{"euw1", region}], h.rtt[[2]string{"aps1", region}] = use1, euw1, aps1
	}
	ms := time.Millisecond
	set("us-east", 2*ms, 75*ms, 190*ms)
	set("eu-west", 75*ms, 2*ms, 120*ms)
	set("ap-south", 190*ms, 40*ms, 60*ms)
	for _, d := range down {
		h.down[d] = true
	}
	return h
}

// ask queries name's A record with an ECS subnet (invalid prefix: none)
// and returns the answer address and the ECS scope returned.
func ask(t *testing.T, addr string, ecs netip.Prefix, opts ...dnstest.QueryOption) (string, int) {
	t.Helper()
	if ecs.IsValid() {
		opts = append(opts, dnstest.ECS(ecs))
	}
	resp := dnstest.Exchange(t, addr, dnstest.Query("api.example.test.", dns.TypeA, opts...), "udp")
	if len(resp.Answer) != 1 {
		t.Fatalf("want one answer, got %v", resp.Answer)
	}
	scope := -1
	if o := resp.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				scope = int(e.SourceScope)
			}
		}
	}
	return resp.Answer[0].(*dns.A).A.String(), scope
}

func TestLatencyPlacement(t *testing.T) {
	srv, addr := dnstest.StartServer(t, latencyConfig)
	if err := srv.SetHealth(measured()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		ecs       string
		down      []string
		want      string
		wantScope int
	}{
		{"eu network by ecs", "10.2.9.0/24", nil, "192.0.2.2", 16},
		{"longest prefix scope", "10.2.3.0/24", nil, "192.0.2.2", 24},
		{"us network", "10.1.0.0/24", nil, "192.0.2.1", 16},
		{"remote endpoint nearer by measured rtt", "10.3.0.0/24", nil, "192.0.2.2", 16},
		{"unplaced client: the node's region", "203.0.113.0/24", nil, "192.0.2.1", 0},
		{"ipv6 ecs", "2001:db8:2::/56", nil, "192.0.2.2", 48},
		{"nearest down: next nearest", "10.2.9.0/24", []string{"euw1"}, "192.0.2.1", 16},
		{"from ap-south with eu down", "10.3.0.0/24", []string{"euw1"}, "192.0.2.3", 16},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := srv.SetHealth(measured(c.down...)); err != nil {
				t.Fatal(err)
			}
			for _, path := range []struct {
				name string
				opts []dnstest.QueryOption
			}{{"fast", nil}, {"general", []dnstest.QueryOption{dnstest.NSID()}}} {
				got, scope := ask(t, addr, netip.MustParsePrefix(c.ecs), path.opts...)
				if got != c.want || scope != c.wantScope {
					t.Errorf("%s path: %s scope %d, want %s scope %d", path.name, got, scope, c.want, c.wantScope)
				}
			}
		})
	}
}

// TestLatencyWithoutRTT: with nothing measured, the distance between
// region locations ranks the endpoints.
func TestLatencyWithoutRTT(t *testing.T) {
	_, addr := dnstest.StartServer(t, latencyConfig)
	for ecs, want := range map[string]string{"10.1.0.0/24": "192.0.2.1", "10.2.0.0/24": "192.0.2.2", "10.3.0.0/24": "192.0.2.3"} {
		if got, _ := ask(t, addr, netip.MustParsePrefix(ecs)); got != want {
			t.Errorf("client %s: %s, want %s (nearest by location)", ecs, got, want)
		}
	}
}

// TestLatencyTolerance: endpoints within the tolerance of the best share
// the answers by weight; one outside never appears.
func TestLatencyTolerance(t *testing.T) {
	srv, addr := dnstest.StartServer(t, latencyConfig)
	h := measured()
	h.rtt[[2]string{"use1", "eu-west"}] = 8 * time.Millisecond // within 10ms of euw1's 2ms
	if err := srv.SetHealth(h); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 200 {
		got, _ := ask(t, addr, netip.MustParsePrefix("10.2.0.0/24"))
		seen[got]++
	}
	if seen["192.0.2.1"] < 50 || seen["192.0.2.2"] < 50 || seen["192.0.2.3"] != 0 {
		t.Errorf("answers %v: want use1 and euw1 sharing, aps1 never", seen)
	}
}
