package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/internal/certtest"
	"meridian/skew"
)

// skewResolver is one simulated resolver cache of a test population: it
// sends its queries from its own loopback address (all of 127/8 is local on
// Linux), with its own ECS subnet or none.
type skewResolver struct {
	kind string // heavy, clamper, light, ...
	src  netip.Addr
	ecs  netip.Prefix
}

// identity is how the report names the resolver's cache when the server
// returns ECS scope bits: the subnet it caches under is the query's
// masked to min(source, scope) (RFC 7871 §7.3.1).
func (r skewResolver) identity(scope int) string {
	if !r.ecs.IsValid() {
		return r.src.String()
	}
	p, _ := r.ecs.Addr().Prefix(min(scope, r.ecs.Bits()))
	return r.src.String() + " ecs " + p.String()
}

// ask sends one A query for name to server from r's address and returns
// the addresses answered and their TTL.
func (r skewResolver) ask(server, name string) ([]string, uint32, error) {
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second,
		Dialer: &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.UDPAddr{IP: r.src.AsSlice()}}}
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
	if r.ecs.IsValid() {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
			SourceNetmask: uint8(r.ecs.Bits()), Address: r.ecs.Addr().AsSlice()})
		m.Extra = append(m.Extra, o)
	}
	resp, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, 0, fmt.Errorf("%s (%s) asking %s: %w", r.src, r.kind, server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, 0, fmt.Errorf("%s (%s) asking %s: rcode %s", r.src, r.kind, server, dns.RcodeToString[resp.Rcode])
	}
	var addrs []string
	var ttl uint32
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			addrs, ttl = append(addrs, a.A.String()), a.Hdr.Ttl
		}
	}
	if len(addrs) == 0 {
		return nil, 0, fmt.Errorf("%s (%s) asking %s: no A record", r.src, r.kind, server)
	}
	return addrs, ttl, nil
}

// skewTally counts the answers a test actually received, by answered
// address, in total and per resolver kind.
type skewTally struct {
	mu     sync.Mutex
	byAddr map[string]int
	byKind map[string]int
	errs   []error
}

func newSkewTally() *skewTally {
	return &skewTally{byAddr: map[string]int{}, byKind: map[string]int{}}
}

// ask sends one query for r and counts what came back; it returns the TTL
// answered (0 after an error).
func (c *skewTally) ask(r skewResolver, server, name string) uint32 {
	addrs, ttl, err := r.ask(server, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.errs = append(c.errs, err)
		return 0
	}
	for _, a := range addrs {
		c.byAddr[a]++
	}
	c.byKind[r.kind]++
	return ttl
}

func (c *skewTally) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.byKind {
		n += v
	}
	return n
}

// expDelay draws an exponential delay with the given mean.
func expDelay(rng *rand.Rand, mean time.Duration) time.Duration {
	return time.Duration(rng.ExpFloat64() * float64(mean))
}

// pace sleeps d, or until end; false when end comes first. This paces the
// simulated resolvers' traffic; no assertion waits on it.
func pace(d time.Duration, end time.Time) bool {
	if time.Now().Add(d).After(end) {
		return false
	}
	time.Sleep(d)
	return true
}

// skewReportOf reads the node's /api/v1/skew report of service.
func skewReportOf(t testing.TB, httpPort int, service, window string) (*skew.Report, int, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/skew?service=%s&window=%s", httpPort, service, window))
	if err != nil {
		t.Fatalf("GET /api/v1/skew: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, string(body)
	}
	var rep skew.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("decode /api/v1/skew: %v\n%s", err, body)
	}
	return &rep, resp.StatusCode, string(body)
}

// reportText renders a report for a failure message.
func reportText(rep *skew.Report) string {
	var b strings.Builder
	rep.WriteText(&b)
	return b.String()
}

func endpointShare(rep *skew.Report, name string) skew.EndpointShare {
	for _, e := range rep.Endpoints {
		if e.Name == name {
			return e
		}
	}
	return skew.EndpointShare{}
}

// skewNodeConfig writes a node's configuration: regions east (10.1/16)
// and west (10.2/16), a latency-routed service with a 1-second TTL and one
// endpoint per region, no checks (both always answerable), and the extra
// TOML given.
func skewNodeConfig(t testing.TB, name string, dnsPort, httpPort int, extra string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".toml")
	body := fmt.Sprintf(`
[node]
name = %q
region = "east"
[dns]
listen = ["127.0.0.1:%d"]
[http]
listen = "127.0.0.1:%d"
[regions.east]
location = [40.7, -74.0]
networks = ["10.1.0.0/16"]
[regions.west]
location = [37.8, -122.4]
networks = ["10.2.0.0/16"]
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "latency"
ttl = 1
endpoints = [
  { name = "east1", region = "east", address = "192.0.2.1" },
  { name = "west1", region = "west", address = "192.0.2.2" },
]
%s
`, name, dnsPort, httpPort, extra)
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestSkewEndToEnd runs `meridian serve` with a latency-routed service of
// TTL 1 s and sends it real DNS queries from a known population of
// resolvers, each from its own loopback address with its own ECS subnet:
// three heavy caches in the east (they re-query about 0.1 s after the TTL
// expires: ~10 lookups/s each behind them), one clamping cache in the west
// (it re-queries only every 3 TTLs), and forty light ones in the west (two
// or three queries each). Then /api/v1/skew must say: the heavy caches
// carry most of the demand although they sent a minority of the answers
// (east's estimated share far above its answered share), and they are the
// top contributors; the clamper, and only it, is clamped; and the answers
// per endpoint are exactly those the test received.
func TestSkewEndToEnd(t *testing.T) {
	dnsPort, httpPort := freePort(t), freePort(t)
	startServe(t, skewNodeConfig(t, "skew-e2e", dnsPort, httpPort, ""), httpPort)
	server := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	const name, scope = "api.example.test.", 16 // the regions' networks are /16s

	var pop []skewResolver
	for i := range 3 {
		pop = append(pop, skewResolver{kind: "heavy", src: netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}),
			ecs: netip.MustParsePrefix(fmt.Sprintf("10.1.%d.0/24", i+1))})
	}
	clamper := skewResolver{kind: "clamper", src: netip.MustParseAddr("127.0.2.1"), ecs: netip.MustParsePrefix("10.2.200.0/24")}
	pop = append(pop, clamper)
	for i := range 40 {
		pop = append(pop, skewResolver{kind: "light", src: netip.AddrFrom4([4]byte{127, 0, 3, byte(i + 1)}),
			ecs: netip.MustParsePrefix(fmt.Sprintf("10.2.%d.0/24", i+10))})
	}

	const traffic = 20 * time.Second
	tally := newSkewTally()
	start := time.Now()
	end := start.Add(traffic)
	var wg sync.WaitGroup
	for i, r := range pop {
		rng := rand.New(rand.NewPCG(7, uint64(i)))
		wg.Go(func() {
			switch r.kind {
			case "heavy": // re-query as the TTL expires, plus a short wait for the next client lookup
				for range 40 {
					ttl := tally.ask(r, server, name)
					if !pace(time.Duration(max(ttl, 1))*time.Second+expDelay(rng, 100*time.Millisecond), end) {
						return
					}
				}
			case "clamper": // holds every answer three TTLs
				for range 15 {
					ttl := tally.ask(r, server, name)
					if !pace(3*time.Duration(max(ttl, 1))*time.Second+expDelay(rng, 300*time.Millisecond), end) {
						return
					}
				}
			case "light": // two or three lookups over the run, at least 1.5 s apart
				n := 2 + rng.IntN(2)
				at := make([]time.Duration, 0, n)
				for len(at) < n {
					d := time.Duration(rng.Int64N(int64(traffic - time.Second)))
					if !slices.ContainsFunc(at, func(o time.Duration) bool { return (d - o).Abs() < 1500*time.Millisecond }) {
						at = append(at, d)
					}
				}
				slices.Sort(at)
				for _, d := range at {
					time.Sleep(time.Until(start.Add(d)))
					tally.ask(r, server, name)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range tally.errs {
		t.Errorf("query lost: %v", err)
	}
	total := tally.total()
	t.Logf("sent %d queries in %s: %v; answers by address %v", total, time.Since(start).Round(time.Millisecond), tally.byKind, tally.byAddr)

	// The answers are recorded after they are written: poll until the
	// node has them all.
	var rep *skew.Report
	eventually(t, 10*time.Second, "the report to hold every answer the test received", func() bool {
		rep, _, _ = skewReportOf(t, httpPort, name, "5m")
		return rep != nil && rep.Answers == uint64(total)
	})
	t.Logf("report:\n%s", reportText(rep))

	east, west := endpointShare(rep, "east1"), endpointShare(rep, "west1")
	if east.Answers != uint64(tally.byAddr["192.0.2.1"]) || west.Answers != uint64(tally.byAddr["192.0.2.2"]) {
		t.Errorf("answers per endpoint: east1 %d, west1 %d; the test received east1 %d, west1 %d",
			east.Answers, west.Answers, tally.byAddr["192.0.2.1"], tally.byAddr["192.0.2.2"])
	}
	if tally.byAddr["192.0.2.1"] != tally.byKind["heavy"] {
		t.Fatalf("the heavy (east) resolvers got %d answers, east1 %d: the placement is not what the test assumes",
			tally.byKind["heavy"], tally.byAddr["192.0.2.1"])
	}
	heavyAnswered := float64(tally.byKind["heavy"]) / float64(total)
	if heavyAnswered >= 0.5 || math.Abs(east.Answered-heavyAnswered) > 1e-9 {
		t.Errorf("east1 answered share %.3f, the heavy resolvers' share of the answers %.3f (the test wants it below 0.5)",
			east.Answered, heavyAnswered)
	}
	if east.Estimated < 0.5 || east.Estimated < east.Answered+0.15 {
		t.Errorf("east1 estimated share %.3f (answered %.3f): the heavy caches' demand should dominate", east.Estimated, east.Answered)
	}

	// The heavy caches are the three largest shares among the contributors
	// and carry most of the demand between them.
	heavy := map[string]bool{}
	for _, r := range pop[:3] {
		heavy[r.identity(scope)] = true
	}
	top := slices.Clone(rep.Top)
	slices.SortFunc(top, func(a, b skew.Contributor) int { return cmpFloat(b.Share, a.Share) })
	var heavyShare float64
	for i, c := range top {
		if i < 3 && !heavy[c.Identity] {
			t.Errorf("contributor #%d by share is %s (%.3f), not a heavy resolver; top: %+v", i+1, c.Identity, c.Share, top)
		}
		if heavy[c.Identity] {
			heavyShare += c.Share
			if c.Endpoint != "east1" || c.Contribution <= 0 {
				t.Errorf("heavy %s: contributes %+.3f to %s, want a positive contribution to east1", c.Identity, c.Contribution, c.Endpoint)
			}
		}
	}
	if heavyShare < 0.5 {
		t.Errorf("the heavy resolvers carry %.3f of the demand, want most of it", heavyShare)
	}

	// The clamper is detected, and it is the one clamped identity.
	if rep.TTL.Clamped != 1 || len(rep.TTL.Clamps) != 1 || rep.TTL.Clamps[0].Identities != 1 {
		t.Errorf("ttl: %d clamped identities, clamps %+v; want the one clamper", rep.TTL.Clamped, rep.TTL.Clamps)
	}
	found := false
	for _, c := range rep.Top {
		if c.Identity == clamper.identity(scope) {
			found = true
			if c.Class != "clamped" {
				t.Errorf("the clamper %s is classed %q", c.Identity, c.Class)
			}
		} else if c.Class == "clamped" {
			t.Errorf("%s (not the clamper) is classed clamped", c.Identity)
		}
	}
	if !found {
		t.Errorf("the clamper %s is not among the top contributors %+v", clamper.identity(scope), rep.Top)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0] != "skew-e2e" || rep.AnsweredLabel != "decisions, not traffic" {
		t.Errorf("nodes %v, answered label %q", rep.Nodes, rep.AnsweredLabel)
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestSkewClusterMergedReport runs two nodes gossiping on loopback with a
// one-second exchange: queries sent only to A, only to B, and by one
// resolver to both all show in each node's report, which names both nodes
// as contributors.
func TestSkewClusterMergedReport(t *testing.T) {
	type nodePorts struct {
		name              string
		dns, http, gossip int
		file              string
		server            string
	}
	nodes := []*nodePorts{{name: "skew-a"}, {name: "skew-b"}}
	for _, n := range nodes {
		n.dns, n.http, n.gossip = freePort(t), freePort(t), freePort(t)
		n.server = fmt.Sprintf("127.0.0.1:%d", n.dns)
	}
	for _, n := range nodes {
		var join []string
		for _, o := range nodes {
			join = append(join, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", o.gossip)))
		}
		n.file = skewNodeConfig(t, n.name, n.dns, n.http, fmt.Sprintf(`
[gossip]
bind = "127.0.0.1:%d"
join = [%s]
profile = "local"
cluster = "skew-e2e"
[skew]
exchange_interval = "1s"
`, n.gossip, strings.Join(join, ", ")))
	}
	for _, n := range nodes {
		startServe(t, n.file, n.http)
	}
	c0 := &clusterNode{name: "skew-a", httpPort: nodes[0].http}
	c1 := &clusterNode{name: "skew-b", httpPort: nodes[1].http}
	for _, c := range []*clusterNode{c0, c1} {
		eventually(t, 15*time.Second, c.name+" seeing both members", func() bool { return len(c.aliveMembers(t)) == 2 })
	}

	const name = "api.example.test."
	groups := []struct {
		to   []*nodePorts
		base byte
		n    int
	}{
		{[]*nodePorts{nodes[0]}, 4, 3},           // only A
		{[]*nodePorts{nodes[1]}, 5, 3},           // only B
		{[]*nodePorts{nodes[0], nodes[1]}, 6, 1}, // a resolver spreading its queries over both name servers
	}
	tally := newSkewTally()
	perNode := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range groups {
		for i := range g.n {
			r := skewResolver{kind: fmt.Sprintf("group%d", g.base), src: netip.AddrFrom4([4]byte{127, 0, g.base, byte(i + 1)}),
				ecs: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 1+i%2, g.base))}
			wg.Go(func() {
				for q := range 5 {
					to := g.to[q%len(g.to)]
					if tally.ask(r, to.server, name) > 0 {
						mu.Lock()
						perNode[to.name]++
						mu.Unlock()
					}
					time.Sleep(1100 * time.Millisecond) // past the 1-s TTL
				}
			})
		}
	}
	wg.Wait()
	for _, err := range tally.errs {
		t.Errorf("query lost: %v", err)
	}
	total := tally.total()
	t.Logf("%d answers: %v per node, %v by address", total, perNode, tally.byAddr)
	if perNode["skew-a"] == 0 || perNode["skew-b"] == 0 {
		t.Fatalf("queries per node %v: both nodes must have answered", perNode)
	}
	for _, n := range nodes {
		var rep *skew.Report
		eventually(t, 15*time.Second, n.name+"'s report holding the answers of both nodes", func() bool {
			rep, _, _ = skewReportOf(t, n.http, name, "5m")
			return rep != nil && rep.Answers == uint64(total)
		})
		for addr, ep := range map[string]string{"192.0.2.1": "east1", "192.0.2.2": "west1"} {
			if got := endpointShare(rep, ep).Answers; got != uint64(tally.byAddr[addr]) {
				t.Errorf("%s: %s has %d answers, the test received %d", n.name, ep, got, tally.byAddr[addr])
			}
		}
		nodesIn := slices.Sorted(slices.Values(rep.Nodes))
		both := false
		for _, w := range rep.Windows {
			both = both || slices.Contains(w.Nodes, "skew-a") && slices.Contains(w.Nodes, "skew-b")
		}
		if !slices.Equal(nodesIn, []string{"skew-a", "skew-b"}) || !both {
			t.Errorf("%s: report nodes %v, windows %+v; want both nodes contributing", n.name, rep.Nodes, rep.Windows)
		}
	}
}

// TestSkewAPIAndCommand checks /api/v1/skew's errors (bad window 400,
// unknown service 404, no answers yet 404), the array of every service's
// report, the gauges on /metrics, and `meridian skew` against the running
// node, as text and as JSON.
func TestSkewAPIAndCommand(t *testing.T) {
	dnsPort, httpPort := freePort(t), freePort(t)
	startServe(t, skewNodeConfig(t, "skew-api", dnsPort, httpPort, ""), httpPort)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		path, want string
		code       int
	}{
		{"/api/v1/skew?service=api.example.test.&window=7m", `skew: window "7m": give a multiple of 5m up to 1h, such as 5m or 1h`, 400},
		{"/api/v1/skew?service=api.example.test.&window=2h", `skew: window "2h": give a multiple of 5m up to 1h`, 400},
		{"/api/v1/skew?window=soon", `skew: window "soon"`, 400},
		{"/api/v1/skew?service=nope.example.test", `skew: no service "nope.example.test" (have api.example.test.)`, 404},
		{"/api/v1/skew?service=api.example.test", `skew: no answers recorded for api.example.test. in the last 5m yet`, 404},
		{"/api/v1/skew", "[]", 200},
	} {
		code, body := get(c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %q; want %d with %q", c.path, code, body, c.code, c.want)
		}
	}
	code, out, errOut := runCmd(t, "skew", "-http", base)
	if code != 0 || !strings.Contains(out, "no answers recorded for any service in the last 1h yet") {
		t.Errorf("meridian skew before any answer: exit %d\n%s%s", code, out, errOut)
	}

	r := skewResolver{kind: "one", src: netip.MustParseAddr("127.0.7.1"), ecs: netip.MustParsePrefix("10.2.7.0/24")}
	tally := newSkewTally()
	for range 3 {
		tally.ask(r, fmt.Sprintf("127.0.0.1:%d", dnsPort), "API.example.test.")
	}
	if len(tally.errs) > 0 {
		t.Fatal(tally.errs)
	}
	var rep *skew.Report
	eventually(t, 5*time.Second, "three answers in the report", func() bool {
		rep, _, _ = skewReportOf(t, httpPort, "api.example.test", "1h") // the name as a user types it
		return rep != nil && rep.Answers == 3
	})
	if rep.Window != "1h" || rep.Service != "api.example.test." || endpointShare(rep, "west1").Answers != 3 {
		t.Errorf("report: window %q, service %q, west1 %d answers", rep.Window, rep.Service, endpointShare(rep, "west1").Answers)
	}
	code, body := get("/api/v1/skew?window=1h")
	var all []skew.Report
	if err := json.Unmarshal([]byte(body), &all); code != 200 || err != nil || len(all) != 1 || all[0].Service != "api.example.test." || all[0].Answers != 3 {
		t.Errorf("GET /api/v1/skew (every service): %d %v\n%s", code, err, body)
	}

	code, out, errOut = runCmd(t, "skew", "-http", base, "-service", "api.example.test", "-window", "5m")
	for _, want := range []string{"api.example.test.  (latency, window 5m", "nodes skew-api · 3 answers", "west1", "east1",
		"(answered: decisions, not traffic)", "alarms:", "confidence "} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("meridian skew -service: exit %d, output lacks %q:\n%s%s", code, want, out, errOut)
			break
		}
	}
	code, out, errOut = runCmd(t, "skew", "-http", base, "-json")
	if err := json.Unmarshal([]byte(out), &all); code != 0 || err != nil || len(all) != 1 || all[0].Answers != 3 || all[0].Window != "1h" {
		t.Errorf("meridian skew -json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	code, out, errOut = runCmd(t, "skew", "-http", base, "-service", "nope")
	if code != 1 || !strings.Contains(errOut, `404 Not Found: skew: no service "nope"`) {
		t.Errorf("meridian skew -service nope: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCmd(t, "skew", "-http", base, "-window", "3m")
	if code != 1 || !strings.Contains(errOut, "400 Bad Request") {
		t.Errorf("meridian skew -window 3m: exit %d\n%s", code, errOut)
	}

	// The gauges: every series labelled from the configuration, present
	// from the start (the first scrape builds the reports if no refresh
	// has yet).
	_, metrics := get("/metrics")
	for _, want := range []string{
		`meridian_skew_intended_share{endpoint="east1",service="api.example.test."} 0.5`,
		`meridian_skew_estimated_share{endpoint="west1",service="api.example.test."}`,
		`meridian_skew_tvd{service="api.example.test."}`,
		`meridian_skew_effective_resolvers{service="api.example.test."}`,
		`meridian_skew_alarm{alarm="ACTIVE_PASSIVE",endpoint="east1",service="api.example.test."} 0`,
		`meridian_skew_alarm{alarm="CONCENTRATED",endpoint="west1",service="api.example.test."}`,
		`meridian_skew_peer_exports_rejected_total 0`,
		`meridian_skew_reload_lost_answers_total 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestSkewCommandMutualTLS runs `meridian skew` against a node whose admin
// API demands a client certificate.
func TestSkewCommandMutualTLS(t *testing.T) {
	ca := certtest.New(t)
	caFile, serverCert, serverKey := ca.ServerFiles(t, "127.0.0.1")
	_, clientCert, clientKey := ca.ClientFiles(t, "operator")
	dnsPort, httpPort := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	file := adminConfig(t, dnsPort, addr, fmt.Sprintf("tls_cert = %q\ntls_key = %q\nclient_ca = %q", serverCert, serverKey, caFile))
	good := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientTLS(t, "operator")}}
	startServeTLS(t, file, "https://"+addr, good)
	r := skewResolver{kind: "one", src: netip.MustParseAddr("127.0.8.1")}
	tally := newSkewTally()
	tally.ask(r, fmt.Sprintf("127.0.0.1:%d", dnsPort), "api.example.test.")
	if len(tally.errs) > 0 {
		t.Fatal(tally.errs)
	}
	var out, errOut string
	eventually(t, 5*time.Second, "meridian skew over mTLS showing the answer", func() bool {
		var code int
		code, out, errOut = runCmd(t, "skew", "-http", addr, "-ca", caFile, "-cert", clientCert, "-key", clientKey)
		return code == 0 && strings.Contains(out, "nodes tls-node · 1 answers")
	})
	code, out, errOut := runCmd(t, "skew", "-http", addr, "-ca", caFile)
	if code != 1 || out != "" || !strings.Contains(errOut, "certificate required") {
		t.Errorf("meridian skew without a client certificate: exit %d, %q %q", code, out, errOut)
	}
}

// TestSkewReloadKeepsIndexes reloads, under query load, between
// configurations that reorder the services and one service's endpoints
// (the first reload adds one), with a bad file in between: every answer
// the test received is in the report under the endpoint that was
// answered, and the failed reload changed nothing.
func TestSkewReloadKeepsIndexes(t *testing.T) {
	dnsPort, httpPort := freePort(t), freePort(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	head := fmt.Sprintf(`
[node]
name = "skew-reload"
region = "r"
[dns]
listen = ["127.0.0.1:%d"]
[http]
listen = "127.0.0.1:%d"
[regions.r]
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
`, dnsPort, httpPort)
	one := `
[[services]]
name = "one.example.test."
policy = "weighted"
ttl = 5
endpoints = [
  { name = "a", region = "r", address = "192.0.2.1" },
  { name = "b", region = "r", address = "192.0.2.2" },
]
`
	other := `
[[services]]
name = "other.example.test."
policy = "weighted"
ttl = 5
endpoints = [{ name = "x", region = "r", address = "192.0.2.9" }]
`
	oneReordered := `
[[services]]
name = "one.example.test."
policy = "weighted"
ttl = 5
endpoints = [
  { name = "c", region = "r", address = "192.0.2.3" },
  { name = "b", region = "r", address = "192.0.2.2" },
  { name = "a", region = "r", address = "192.0.2.1" },
]
`
	oneAgain := `
[[services]]
name = "one.example.test."
policy = "weighted"
ttl = 5
endpoints = [
  { name = "b", region = "r", address = "192.0.2.2" },
  { name = "a", region = "r", address = "192.0.2.1" },
  { name = "c", region = "r", address = "192.0.2.3" },
]
`
	// The node starts with configs[0]; the reloads alternate between
	// configs[1] and configs[2], which hold the same endpoints in other
	// orders (c added by the first reload) and the services in both orders.
	configs := []string{head + one + other, head + other + oneReordered, head + oneAgain + other}
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(configs[0])
	startServe(t, file, httpPort)
	reload := func() int {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/api/v1/reload", httpPort), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	server := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	tally := newSkewTally()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		r := skewResolver{kind: "load", src: netip.AddrFrom4([4]byte{127, 0, 9, byte(i + 1)})}
		wg.Go(func() {
			for range 400 {
				select {
				case <-stop:
					return
				default:
				}
				tally.ask(r, server, "one.example.test.")
				tally.ask(r, server, "other.example.test.")
			}
		})
	}
	for i := range 6 {
		time.Sleep(100 * time.Millisecond) // let answers of this configuration through
		if i == 3 {
			write("[node]\nname = \"skew-reload\"\nregion = \"nowhere\"\n")
			if code := reload(); code != http.StatusUnprocessableEntity {
				t.Errorf("a bad file reloaded with %d, want 422", code)
			}
		}
		write(configs[1+i%2])
		if code := reload(); code != http.StatusOK {
			t.Fatalf("reload %d: %d", i, code)
		}
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, err := range tally.errs {
		t.Errorf("query lost: %v", err)
	}
	t.Logf("answers by address: %v", tally.byAddr)

	want := map[string]int{"a": tally.byAddr["192.0.2.1"], "b": tally.byAddr["192.0.2.2"], "c": tally.byAddr["192.0.2.3"]}
	if want["a"] == 0 || want["b"] == 0 || want["c"] == 0 {
		t.Fatalf("every endpoint of one.example.test. should have been answered under load: %v", want)
	}
	var rep, otherRep *skew.Report
	held := func() bool {
		rep, _, _ = skewReportOf(t, httpPort, "one.example.test.", "5m")
		otherRep, _, _ = skewReportOf(t, httpPort, "other.example.test.", "5m")
		return rep != nil && otherRep != nil &&
			rep.Answers == uint64(want["a"]+want["b"]+want["c"]) && otherRep.Answers == uint64(tally.byAddr["192.0.2.9"])
	}
	for deadline := time.Now().Add(5 * time.Second); !held(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			lost := ""
			if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, l := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(l, "meridian_skew_reload_lost") {
						lost = l
					}
				}
			}
			t.Fatalf("the reports do not hold every answer within 5 s: received %v and other %d;\n%s\nother:\n%s\nrecording %+v / %+v; %s",
				want, tally.byAddr["192.0.2.9"], reportText(rep), reportText(otherRep), rep.Recording, otherRep.Recording, lost)
		}
	}
	for ep, n := range want {
		if got := endpointShare(rep, ep).Answers; got != uint64(n) {
			t.Errorf("one.example.test. %s: %d answers in the report, the test received %d", ep, got, n)
		}
	}
	if got := endpointShare(otherRep, "x").Answers; got != uint64(tally.byAddr["192.0.2.9"]) {
		t.Errorf("other.example.test. x: %d answers in the report, the test received %d", got, tally.byAddr["192.0.2.9"])
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), "\nmeridian_skew_reload_lost_answers_total 0\n") {
		t.Errorf("answers lost across reloads that removed nothing:\n%s", b)
	}
}

// TestSkewHealthTimeline: an endpoint whose check fails is recorded down
// (the report's intended share moves to the other one and says it is not
// answerable), and up again when it recovers.
func TestSkewHealthTimeline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	dnsPort, httpPort := freePort(t), freePort(t)
	file := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
[node]
name = "skew-health"
region = "r"
[dns]
listen = ["127.0.0.1:%d"]
[http]
listen = "127.0.0.1:%d"
[regions.r]
[checks.tcp]
type = "tcp"
port = %d
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "weighted"
ttl = 1
check = "tcp"
endpoints = [
  { name = "up", region = "r", address = "127.0.0.1" },
  { name = "down", region = "r", address = "127.0.0.2" },
]
`, dnsPort, httpPort, port)), 0o644)
	startServe(t, file, httpPort)
	eventually(t, 10*time.Second, "the endpoint without a listener leaving the answers", func() bool {
		return slices.Equal(answersOf(t, dnsPort, "api.example.test"), []string{"127.0.0.1"})
	})
	r := skewResolver{kind: "one", src: netip.MustParseAddr("127.0.10.1")}
	tally := newSkewTally()
	tally.ask(r, fmt.Sprintf("127.0.0.1:%d", dnsPort), "api.example.test.")
	var rep *skew.Report
	eventually(t, 5*time.Second, "the report with the down endpoint not answerable", func() bool {
		rep, _, _ = skewReportOf(t, httpPort, "api.example.test.", "5m")
		return rep != nil && !endpointShare(rep, "down").Up && endpointShare(rep, "up").Up
	})
	if up, down := endpointShare(rep, "up"), endpointShare(rep, "down"); up.Intended <= down.Intended {
		t.Errorf("intended: up %.3f, down %.3f; the down endpoint's time out of the answers should lower its share", up.Intended, down.Intended)
	}

	// The endpoint recovers: a listener on 127.0.0.2 too.
	l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	go func() {
		for {
			c, err := l2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	eventually(t, 10*time.Second, "the recovered endpoint answerable again in the report", func() bool {
		rep, _, _ = skewReportOf(t, httpPort, "api.example.test.", "5m")
		return rep != nil && endpointShare(rep, "down").Up
	})
}

// TestSkewDisabled: with skew.enabled = false the node answers as usual,
// /api/v1/skew says recording is off, and no skew gauge is exposed.
func TestSkewDisabled(t *testing.T) {
	dnsPort, httpPort := freePort(t), freePort(t)
	startServe(t, skewNodeConfig(t, "skew-off", dnsPort, httpPort, "[skew]\nenabled = false\n"), httpPort)
	if got := answersOf(t, dnsPort, "api.example.test"); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("answers %v", got)
	}
	_, code, body := skewReportOf(t, httpPort, "api.example.test.", "5m")
	if code != 404 || !strings.Contains(body, "skew: recording is off on this node (skew.enabled = false)") {
		t.Errorf("/api/v1/skew with recording off: %d %q", code, body)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(b), "meridian_skew_") {
		t.Errorf("skew metrics exposed with recording off")
	}
}
