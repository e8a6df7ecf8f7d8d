package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"meridian/config"
	"meridian/health"
	"meridian/probe"
	"meridian/resolver"
	"meridian/skew"
)

// skewTestConfig parses a one-region configuration with the given services.
func skewTestConfig(t *testing.T, node, services string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[node]
name = %q
region = "r"
[regions.r]
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
%s`, node, services)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const (
	skewSvcAB = `
[[services]]
name = "one.example.test."
ttl = 5
endpoints = [
  { name = "a", region = "r", address = "192.0.2.1" },
  { name = "b", region = "r", address = "192.0.2.2", weight = 3 },
]
`
	skewSvcOther = `
[[services]]
name = "other.example.test."
ttl = 5
endpoints = [{ name = "x", region = "r", address = "192.0.2.9" }]
`
	skewSvcBCA = `
[[services]]
name = "one.example.test."
ttl = 5
endpoints = [
  { name = "b", region = "r", address = "192.0.2.2", weight = 3 },
  { name = "c", region = "r", address = "192.0.2.3" },
  { name = "a", region = "r", address = "192.0.2.1" },
]
`
)

// answersByEndpoint returns the report's answers per endpoint name.
func answersByEndpoint(t *testing.T, s *skewNode, service string) map[string]uint64 {
	t.Helper()
	rep, err := s.report(service, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, e := range rep.Endpoints {
		if e.Answers > 0 {
			out[e.Name] = e.Answers
		}
	}
	return out
}

// TestSkewBindingAcrossReload walks reloads that reorder the services
// and one service's endpoints (adding one), remove an endpoint and a
// service and add another, and then pass the registry's limits: answers of
// every table, old or new, count under the endpoint answered; a removed
// endpoint keeps its answers but leaves the intended shares and, once it
// has no answers in the window, the report; a compaction retires the older
// tables' bindings (their answers counted lost).
func TestSkewBindingAcrossReload(t *testing.T) {
	cfg1 := skewTestConfig(t, "n", skewSvcAB+skewSvcOther)
	cfg2 := skewTestConfig(t, "n", skewSvcOther+skewSvcBCA)
	s, dnsSrv := newSkewNodeAndResolver(t, cfg1)
	if err := s.update(dnsSrv, cfg1, nil); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.77")
	b1 := s.bind
	b1.RecordAnswer(0, src, netip.Prefix{}, 1<<0, 5) // one: a
	b1.RecordAnswer(0, src, netip.Prefix{}, 1<<1, 5) // one: b
	b1.RecordAnswer(1, src, netip.Prefix{}, 1<<0, 5) // other: x

	if err := s.update(dnsSrv, cfg2, nil); err != nil {
		t.Fatal(err)
	}
	b2 := s.bind
	if names := s.reg.services[s.reg.svcIndex["one.example.test."]].Endpoints; len(names) != 3 || names[2].Name != "c" {
		t.Fatalf("registry of one.example.test.: %+v, want a, b, then c appended", names)
	}
	b1.RecordAnswer(0, src, netip.Prefix{}, 1<<0|1<<1, 5) // cfg1's table still writing: one: a and b
	b2.RecordAnswer(1, src, netip.Prefix{}, 1<<1, 5)      // one: c
	b2.RecordAnswer(0, src, netip.Prefix{}, 1<<0, 5)      // other: x
	b2.RecordAnswer(1, src, netip.Prefix{}, 1<<2, 5)      // one: a

	// b and other removed, third added.
	cfg3 := skewTestConfig(t, "n", strings.Replace(skewSvcBCA, `  { name = "b", region = "r", address = "192.0.2.2", weight = 3 },`+"\n", "", 1)+`
[[services]]
name = "third.example.test."
endpoints = [{ name = "y", region = "r", address = "192.0.2.8" }]
`)
	if err := s.update(dnsSrv, cfg3, nil); err != nil {
		t.Fatal(err)
	}
	b1.RecordAnswer(0, src, netip.Prefix{}, 1<<1, 5)     // one: b, from the first table
	b2.RecordAnswer(0, src, netip.Prefix{}, 1<<0, 5)     // other: x, removed but still written
	s.bind.RecordAnswer(1, src, netip.Prefix{}, 1<<0, 5) // third: y

	want := map[string]uint64{"a": 3, "b": 3, "c": 1}
	if got := answersByEndpoint(t, s, "one.example.test."); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("one.example.test.: %v, want %v", got, want)
	}
	if got := answersByEndpoint(t, s, "third.example.test."); got["y"] != 1 {
		t.Errorf("third.example.test.: %v, want y: 1", got)
	}
	if got := fmt.Sprint(s.services()); got != "[one.example.test. third.example.test.]" {
		t.Errorf("services %s", got)
	}
	rep, err := s.report("one.example.test.", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b := endpointShare(rep, "b"); b.Name != "b" || b.Up || b.Intended > 0.5 {
		t.Errorf("removed endpoint b: %+v; want it listed (it has answers), not answerable, its intent falling", b)
	}

	// 62 new endpoints: the registry's one.example.test. would pass 64.
	var eps []string
	for i := range 62 {
		eps = append(eps, fmt.Sprintf(`{ name = "n%d", region = "r", address = "192.0.2.%d" }`, i, 100+i))
	}
	cfg4 := skewTestConfig(t, "n", "[[services]]\nname = \"one.example.test.\"\nendpoints = ["+strings.Join(eps, ", ")+"]\n")
	if err := s.update(dnsSrv, cfg4, nil); err != nil {
		t.Fatal(err)
	}
	if s.epoch.Load() != 1 || len(s.reg.services) != 1 || len(s.reg.services[0].Endpoints) != 62 {
		t.Fatalf("after passing the limit: epoch %d, registry %d services", s.epoch.Load(), len(s.reg.services))
	}
	b1.RecordAnswer(0, src, netip.Prefix{}, 1<<0, 5)
	b2.RecordAnswer(1, src, netip.Prefix{}, 1<<0, 5)
	s.bind.RecordAnswer(0, src, netip.Prefix{}, 1<<61, 5) // one: n61
	if got := answersByEndpoint(t, s, "one.example.test."); fmt.Sprint(got) != "map[n61:1]" {
		t.Errorf("after the compaction: %v, want n61: 1", got)
	}
	if lost := s.lost.Load(); lost != 2 {
		t.Errorf("%d answers counted lost, want the 2 of tables from before the compaction", lost)
	}
	if st := s.rec.Stats(); st.Invalid != 0 || st.Stale != 0 {
		t.Errorf("recorder stats %+v: nothing should be invalid or stale", st)
	}
}

// TestSkewUpdateRejectedLeavesBoth: a configuration the recorder refuses
// (4097 services: config takes them, the recorder at most 4096), and one
// the resolver refuses after the recorder took it (a GeoIP database that
// does not parse: config only checks the path), leave the resolver and the
// recorder on the old configuration, still recording the old table's
// answers.
func TestSkewUpdateRejectedLeavesBoth(t *testing.T) {
	cfg1 := skewTestConfig(t, "n", skewSvcAB)
	s, dnsSrv := newSkewNodeAndResolver(t, cfg1)
	old := s.bind
	var many strings.Builder
	for i := range 4097 {
		fmt.Fprintf(&many, "[[services]]\nname = \"s%d.example.test.\"\nendpoints = [{ name = \"e\", region = \"r\", address = \"192.0.2.1\" }]\n", i)
	}
	err := s.update(dnsSrv, skewTestConfig(t, "n", many.String()), nil)
	if err == nil || !strings.Contains(err.Error(), "4097 services, at most 4096") {
		t.Fatalf("update with 4097 services: %v", err)
	}

	geo := filepath.Join(t.TempDir(), "bad.mmdb")
	os.WriteFile(geo, []byte("not a database"), 0o644)
	cfg2 := skewTestConfig(t, "n", skewSvcOther+skewSvcBCA+fmt.Sprintf("[geoip]\ndatabase = %q\n", geo))
	err = s.update(dnsSrv, cfg2, nil)
	if err == nil || !strings.Contains(err.Error(), "geoip") {
		t.Fatalf("update with a bad GeoIP database: %v", err)
	}
	if s.cfg != cfg1 || s.bind != old || len(s.reg.services) != 1 {
		t.Errorf("the node moved on: on cfg1 %t, binding kept %t, %d services in the registry", s.cfg == cfg1, s.bind == old, len(s.reg.services))
	}
	if fmt.Sprint(s.services()) != "[one.example.test.]" {
		t.Errorf("services %v after refused reloads", s.services())
	}
	if _, err := dnsSrv.Explain("other.example.test.", netip.MustParseAddr("192.0.2.7")); err == nil {
		t.Errorf("the resolver serves the refused configuration")
	}
	old.RecordAnswer(0, netip.MustParseAddr("192.0.2.77"), netip.Prefix{}, 1<<1, 5)
	if got := answersByEndpoint(t, s, "one.example.test."); fmt.Sprint(got) != "map[b:1]" || s.lost.Load() != 0 {
		t.Errorf("after the refused reloads: %v recorded, %d lost; want b: 1, none lost", got, s.lost.Load())
	}
	rep, err := s.report("one.example.test.", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Endpoints) != 2 || rep.Endpoints[0].Name != "a" || rep.Endpoints[1].Name != "b" {
		t.Errorf("report endpoints %+v after the refused reload, want a and b", rep.Endpoints)
	}
}

// TestSkewHealthEvents: the initial state of every endpoint is recorded,
// then only changes of answerability or weight.
func TestSkewHealthEvents(t *testing.T) {
	cfg := skewTestConfig(t, "n", "[checks.tcp]\ntype = \"tcp\"\nport = 80\n"+
		strings.Replace(skewSvcAB, "ttl = 5", "ttl = 5\ncheck = \"tcp\"", 1))
	s, dnsSrv := newSkewNodeAndResolver(t, cfg)
	events := func() []skew.HealthEvent {
		b, err := s.rec.Export(time.Now().UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		x, err := skew.DecodeExport(b)
		if err != nil {
			t.Fatal(err)
		}
		return x.Health
	}
	s.update(dnsSrv, cfg, nil)
	if ev := events(); len(ev) != 2 || !ev[1].Up || ev[0].Weight+ev[1].Weight != 4 {
		t.Fatalf("initial events %+v, want a (weight 1) and b (weight 3) up", ev)
	}
	s.healthChanged(health.NewSnapshot(cfg, downDecider{"none"})) // every endpoint up: no change
	if ev := events(); len(ev) != 2 {
		t.Errorf("events after a snapshot that changes nothing: %+v", ev)
	}
	// b down: an answer for a only, and the report's intent follows.
	s.healthChanged(health.NewSnapshot(cfg, downDecider{"192.0.2.2"}))
	if ev := events(); len(ev) != 3 || ev[2].Endpoint != 1 || ev[2].Up {
		t.Errorf("events after b went down: %+v", ev)
	}
	s.bind.RecordAnswer(0, netip.MustParseAddr("192.0.2.77"), netip.Prefix{}, 1, 5)
	rep, err := s.report("one.example.test.", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := endpointShare(rep, "a"), endpointShare(rep, "b"); !a.Up || b.Up {
		t.Errorf("report: a up %t, b up %t; want a answerable, b not", a.Up, b.Up)
	}
}

// downDecider is a health.Decider under which the targets at addr are down.
type downDecider struct{ addr string }

func (d downDecider) Decide(tg probe.Target, _ config.Quorum) health.Decision {
	if tg.Address.String() == d.addr {
		return health.Decision{State: health.Down}
	}
	return health.Decision{State: health.Up}
}

// TestSkewPeers: a peer's bad export is counted and logged once, a valid
// one kept (the newest of each node), one naming another node refused; a
// peer that left the cluster is forgotten after an hour; no more than
// skewMaxPeers are kept.
func TestSkewPeers(t *testing.T) {
	cfg := skewTestConfig(t, "a", skewSvcAB)
	exportOf := func(node string, at time.Time) []byte {
		r, err := skew.New(skew.Config{Node: node, TopK: 16, Services: []skew.Service{{Name: "one.example.test.", TTL: 5,
			Endpoints: []skew.Endpoint{{Name: "a", Weight: 1}}}}})
		if err != nil {
			t.Fatal(err)
		}
		r.RecordAnswer(0, netip.MustParseAddr("192.0.2.5"), netip.Prefix{}, 1, 5)
		b, err := r.Export(at.UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var logs bytes.Buffer
	members := []health.Member{{Name: "a", Alive: true}, {Name: "b", Alive: true}}
	s, err := newSkewNode(cfg, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry(),
		func() []health.Member { return members })
	if err != nil {
		t.Fatal(err)
	}
	p := s.peers
	p.Accept("b", []byte("MSKW\x01garbage"))
	p.Accept("b", []byte("not an export at all"))
	if n := testutil.ToFloat64(p.rejected); n != 2 {
		t.Errorf("%v rejected exports counted, want 2", n)
	}
	if n := strings.Count(logs.String(), "skew export from a peer rejected"); n != 1 {
		t.Errorf("%d log lines for two bad exports of one peer, want 1:\n%s", n, &logs)
	}
	now := time.Now()
	p.Accept("b", exportOf("b", now))
	p.Accept("b", exportOf("b", now.Add(-time.Minute))) // older: ignored
	p.Accept("c", exportOf("b", now))                   // says it is b
	got := p.list(now)
	if len(got) != 1 || got[0].Node != "b" || got[0].At != now.UnixNano() {
		t.Fatalf("peers' exports %+v, want b's newest", got)
	}
	if n := testutil.ToFloat64(p.rejected); n != 3 {
		t.Errorf("%v rejected exports counted, want 3 (with the one naming another node)", n)
	}
	// The peer's exports count in the report: two nodes, two answers.
	s.bind.RecordAnswer(0, netip.MustParseAddr("192.0.2.6"), netip.Prefix{}, 1, 5)
	rep, err := s.report("one.example.test.", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answers != 2 || fmt.Sprint(rep.Nodes) != "[a b]" {
		t.Errorf("report: %d answers from %v, want 2 from [a b]", rep.Answers, rep.Nodes)
	}

	members = members[:1] // b left
	if len(p.list(now)) != 1 {
		t.Errorf("b forgotten as soon as it left")
	}
	if got := p.list(now.Add(skewPeerForget + time.Minute)); len(got) != 0 {
		t.Errorf("b still held an hour after it left: %v", got)
	}

	for i := range skewMaxPeers + 6 {
		name := fmt.Sprintf("p%02d", i)
		members = append(members, health.Member{Name: name, Alive: true})
		p.Accept(name, exportOf(name, time.Now()))
	}
	if n := len(p.list(time.Now())); n != skewMaxPeers {
		t.Errorf("%d peers held, want %d", n, skewMaxPeers)
	}
}

// TestSkewGauges checks the gauges against their own report: NaN
// estimated shares and TVD before any answer (and no alarm), then shares
// summing to one, TVD equal to half the L1 distance of the exposed shares,
// and one alarm series per endpoint and kind.
func TestSkewGauges(t *testing.T) {
	cfg := skewTestConfig(t, "n", skewSvcAB+skewSvcOther)
	reg := prometheus.NewRegistry()
	s, err := newSkewNode(cfg, slog.New(slog.DiscardHandler), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	gather := func() map[string][]*dto.Metric {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]*dto.Metric{}
		for _, mf := range mfs {
			out[mf.GetName()] = mf.GetMetric()
		}
		return out
	}
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	m := gather() // the first scrape builds the reports
	if n := len(m["meridian_skew_alarm"]); n != 3*len(skew.AlarmKinds()) {
		t.Errorf("%d alarm series, want %d", n, 3*len(skew.AlarmKinds()))
	}
	for _, g := range m["meridian_skew_estimated_share"] {
		if !math.IsNaN(g.GetGauge().GetValue()) {
			t.Errorf("estimated share %s before any answer: %v, want NaN", label(g, "endpoint"), g.GetGauge().GetValue())
		}
	}
	for _, g := range m["meridian_skew_alarm"] {
		if g.GetGauge().GetValue() != 0 {
			t.Errorf("alarm %s/%s raised without answers", label(g, "endpoint"), label(g, "alarm"))
		}
	}
	intended := map[string]float64{}
	for _, g := range m["meridian_skew_intended_share"] {
		intended[label(g, "endpoint")] = g.GetGauge().GetValue()
	}
	if intended["a"] != 0.25 || intended["b"] != 0.75 || intended["x"] != 1 {
		t.Errorf("intended shares %v, want a 0.25, b 0.75, x 1", intended)
	}

	for i := range 20 {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})
		s.bind.RecordAnswer(0, src, netip.Prefix{}, 1<<(i%2), 5)
	}
	s.refreshGauges()
	m = gather()
	est := map[string]float64{}
	for _, g := range m["meridian_skew_estimated_share"] {
		if label(g, "service") == "one.example.test." {
			est[label(g, "endpoint")] = g.GetGauge().GetValue()
		}
	}
	var tvd float64
	for _, g := range m["meridian_skew_tvd"] {
		if label(g, "service") == "one.example.test." {
			tvd = g.GetGauge().GetValue()
		}
	}
	if sum := est["a"] + est["b"]; math.Abs(sum-1) > 1e-9 {
		t.Errorf("estimated shares %v sum to %v", est, sum)
	}
	if want := 0.5 * (math.Abs(est["a"]-intended["a"]) + math.Abs(est["b"]-intended["b"])); math.Abs(tvd-want) > 1e-9 {
		t.Errorf("tvd %v, want %v from the shares %v and %v", tvd, want, est, intended)
	}
}

// TestDemoBannerNamesSkewAndUI: the demo tells where the skew report and
// the status page are.
func TestDemoBannerNamesSkewAndUI(t *testing.T) {
	var b strings.Builder
	demoBanner(&b, demoRegions(demoFlags{dnsPort: 5353, httpPort: 9153, gossipPort: 7946}), "/tmp/x", time.Second)
	for _, want := range []string{"meridian skew -http 127.0.0.1:9153", "http://127.0.0.1:9153/ui", "meridian status -http 127.0.0.1:9153"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the demo banner lacks %q:\n%s", want, b.String())
		}
	}
}

// TestSkewBindingDoesNotAllocate guards the answer path: the resolver's
// recorder, with indexes mapped or not, allocates nothing.
func TestSkewBindingDoesNotAllocate(t *testing.T) {
	cfg1 := skewTestConfig(t, "n", skewSvcAB+skewSvcOther)
	s, dnsSrv := newSkewNodeAndResolver(t, cfg1)
	if err := s.update(dnsSrv, skewTestConfig(t, "n", skewSvcOther+skewSvcBCA), nil); err != nil {
		t.Fatal(err)
	}
	src, ecs := netip.MustParseAddr("192.0.2.77"), netip.MustParsePrefix("198.51.100.0/24")
	for _, b := range []*skewBinding{s.bind, newSkewBinding(s.rec, s.reg, cfg1, 0, &s.epoch, &s.lost)} {
		if n := testing.AllocsPerRun(1000, func() { b.RecordAnswer(1, src, ecs, 1<<1, 5) }); n != 0 {
			t.Errorf("RecordAnswer allocates %v times per answer", n)
		}
	}
}

// BenchmarkSkewBinding is the answer path's cost of recording through the
// resolver's recorder (including skew's RecordAnswer, which reads the
// clock): indexes equal to the registry's ("same") or a reordered service
// ("mapped"), with the hand-off drained off the clock.
func BenchmarkSkewBinding(b *testing.B) {
	parse := func(services string) *config.Config {
		cfg, err := config.Parse([]byte("[node]\nname = \"n\"\nregion = \"r\"\n[regions.r]\n[[zones]]\norigin = \"example.test.\"\nns = [\"ns1.example.test.\"]\n"+services), "b.toml")
		if err != nil {
			b.Fatal(err)
		}
		return cfg
	}
	cfg1 := parse(skewSvcAB)
	s, dnsSrv := newSkewNodeAndResolver(b, cfg1)
	same := s.bind
	if err := s.update(dnsSrv, parse(skewSvcBCA), nil); err != nil {
		b.Fatal(err)
	}
	srcs := make([]netip.Addr, 4096)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
	}
	for _, c := range []struct {
		name string
		bind *skewBinding
	}{{"same", same}, {"mapped", s.bind}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.bind.RecordAnswer(0, srcs[i&4095], netip.Prefix{}, 1<<(i&1), 5)
				if i&8191 == 8191 {
					b.StopTimer()
					s.rec.Flush()
					b.StartTimer()
				}
			}
		})
	}
}

// newSkewNodeAndResolver builds a skew node for cfg (no logs, metrics or
// gossip) and a resolver recording into it: the pair serve wires.
func newSkewNodeAndResolver(tb testing.TB, cfg *config.Config) (*skewNode, *resolver.Server) {
	tb.Helper()
	s, err := newSkewNode(cfg, slog.New(slog.DiscardHandler), nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	dnsSrv, err := resolver.New(cfg, resolver.Options{Recorder: s.recorder()})
	if err != nil {
		tb.Fatal(err)
	}
	return s, dnsSrv
}
