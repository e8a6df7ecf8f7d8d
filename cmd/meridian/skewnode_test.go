package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
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

// TestSkewBindingAcrossReload walks a reload that swaps the services'
// order and one service's endpoints (adding one) through each state an
// answer can meet: the new table answering before the recorder has the
// new configuration, the old table's answers landing after, an answer for
// an endpoint or service the other side does not have, and one two
// generations away. Each recorded answer is counted under the endpoint
// that was answered.
func TestSkewBindingAcrossReload(t *testing.T) {
	cfg1 := skewTestConfig(t, "n", skewSvcAB+skewSvcOther)
	cfg2 := skewTestConfig(t, "n", skewSvcOther+skewSvcBCA)
	s, err := newSkewNode(cfg1, slog.New(slog.DiscardHandler), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv, err := resolver.New(cfg1, resolver.Options{Recorder: s.recorder()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.update(dnsSrv, cfg1, nil); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.77")
	old := s.bind
	old.RecordAnswer(0, src, netip.Prefix{}, 1<<0, 5) // one: a
	old.RecordAnswer(0, src, netip.Prefix{}, 1<<1, 5) // one: b
	old.RecordAnswer(1, src, netip.Prefix{}, 1<<0, 5) // other: x

	// The new table answering before the recorder has the new
	// configuration, with the binding update builds for it: a moves back
	// into the old indexes; c has none there (lost).
	pre := &skewBinding{rec: s.rec, gen: old.gen + 1, cur: &s.gen, lost: &s.lost, prev: skewRemap(cfg2, cfg1)}
	pre.RecordAnswer(1, src, netip.Prefix{}, 1<<2, 5) // one: a
	pre.RecordAnswer(1, src, netip.Prefix{}, 1<<1, 5) // one: c

	if err := s.update(dnsSrv, cfg2, nil); err != nil {
		t.Fatal(err)
	}
	next := s.bind
	if next == old || next.gen != old.gen+1 || s.gen.Load() != next.gen {
		t.Fatalf("generations: old %d, next %d, recorder on %d", old.gen, next.gen, s.gen.Load())
	}
	// The old table's answers after the swap (one: a and b together).
	old.RecordAnswer(0, src, netip.Prefix{}, 1<<0|1<<1, 5)
	// The new table, recorder already on it: one is now index 1, c is 1.
	next.RecordAnswer(1, src, netip.Prefix{}, 1<<1, 5) // one: c
	next.RecordAnswer(0, src, netip.Prefix{}, 1<<0, 5) // other: x
	// An answer of a table two generations behind the recorder: lost.
	s.gen.Store(next.gen + 1)
	old.RecordAnswer(0, src, netip.Prefix{}, 1<<0, 5)
	s.gen.Store(next.gen)

	s.rec.Flush()
	want := map[string]uint64{"a": 3, "b": 2, "c": 1}
	if got := answersByEndpoint(t, s, "one.example.test."); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("one.example.test.: %v, want %v", got, want)
	}
	if got := answersByEndpoint(t, s, "other.example.test."); got["x"] != 2 {
		t.Errorf("other.example.test.: %v, want x: 2", got)
	}
	if lost := s.lost.Load(); lost != 2 {
		t.Errorf("%d answers counted lost, want 2 (c before the recorder knew it, one two generations old)", lost)
	}
	if st := s.rec.Stats(); st.Invalid != 0 || st.Stale != 0 {
		t.Errorf("recorder stats %+v: nothing should be invalid or stale", st)
	}
}

// TestSkewUpdateRejectedLeavesBoth: a configuration the recorder refuses
// (4097 services: config takes them, the recorder at most 4096) leaves the
// resolver and the recorder on the old configuration, with an error that
// says why.
func TestSkewUpdateRejectedLeavesBoth(t *testing.T) {
	cfg1 := skewTestConfig(t, "n", skewSvcAB)
	s, err := newSkewNode(cfg1, slog.New(slog.DiscardHandler), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv, err := resolver.New(cfg1, resolver.Options{Recorder: s.recorder()})
	if err != nil {
		t.Fatal(err)
	}
	var many strings.Builder
	for i := range 4097 {
		fmt.Fprintf(&many, "[[services]]\nname = \"s%d.example.test.\"\nendpoints = [{ name = \"e\", region = \"r\", address = \"192.0.2.1\" }]\n", i)
	}
	cfg2 := skewTestConfig(t, "n", many.String())
	err = s.update(dnsSrv, cfg2, nil)
	if err == nil || !strings.Contains(err.Error(), "4097 services, at most 4096") {
		t.Fatalf("update with 4097 services: %v", err)
	}
	if s.cfg != cfg1 || s.gen.Load() != 1 {
		t.Errorf("the recorder moved on: cfg changed %t, generation %d", s.cfg != cfg1, s.gen.Load())
	}
	if _, err := dnsSrv.Explain("s1.example.test.", netip.MustParseAddr("192.0.2.7")); err == nil {
		t.Errorf("the resolver serves the rejected configuration")
	}
	if _, err := dnsSrv.Explain("one.example.test.", netip.MustParseAddr("192.0.2.7")); err != nil {
		t.Errorf("the resolver lost the old configuration: %v", err)
	}
}

// TestSkewHealthEvents: the initial state of every endpoint is recorded,
// then only changes of answerability or weight.
func TestSkewHealthEvents(t *testing.T) {
	cfg := skewTestConfig(t, "n", "[checks.tcp]\ntype = \"tcp\"\nport = 80\n"+
		strings.Replace(skewSvcAB, "ttl = 5", "ttl = 5\ncheck = \"tcp\"", 1))
	s, err := newSkewNode(cfg, slog.New(slog.DiscardHandler), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv, err := resolver.New(cfg, resolver.Options{Recorder: s.recorder()})
	if err != nil {
		t.Fatal(err)
	}
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
