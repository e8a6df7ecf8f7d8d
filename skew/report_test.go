package skew

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// steady records n light-to-heavy caches answered by pick for the span,
// each asking 30 s + Exp(1/λ) after the last answer.
func steady(r *Recorder, svc int, n int, from, to int64, seed uint64, pick func(i int, at int64) uint64) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < n; i++ {
		lam := 0.05 * float64(i+1)
		for at := from + int64(rnd.IntN(30_000))*1e6; at < to; at += int64((30 + rnd.ExpFloat64()/lam) * 1e9) {
			r.Record(Answer{Service: svc, Source: addr(1000*int(seed) + i), Endpoints: pick(i, at), TTL: 30, At: at})
		}
	}
}

func TestReportJSONFields(t *testing.T) {
	r, now := sampleRecorder(t)
	rep, err := r.Report("api.gslb.example.test.", 5*time.Minute, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"service", "window", "from", "to", "nodes", "windows", "endpoints", "regions", "tvd",
		"unattributable", "answered_label", "concentration", "ttl", "top_contributors", "alarms", "confidence", "unverified_answers"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON has no %q", k)
		}
	}
	if m["window"] != "5m" || m["answered_label"] != "decisions, not traffic" {
		t.Errorf("window %v, answered_label %v", m["window"], m["answered_label"])
	}
	if _, err := time.Parse(time.RFC3339, m["from"].(string)); err != nil {
		t.Errorf("from is not RFC 3339: %v", err)
	}
	sub := func(key string, obj map[string]any, keys ...string) {
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("%s has no %q", key, k)
			}
		}
	}
	sub("endpoints[0]", m["endpoints"].([]any)[0].(map[string]any), "name", "region", "intended", "answered", "occupancy",
		"estimated", "lo", "hi", "rho", "z", "answers", "n_eff")
	sub("regions[0]", m["regions"].([]any)[0].(map[string]any), "name", "intended", "answered", "estimated", "lo", "hi")
	sub("concentration", m["concentration"].(map[string]any), "top1", "top5", "top20", "hhi", "n_eff")
	sub("ttl", m["ttl"].(map[string]any), "clamped_identities", "clamped_share", "prefetching", "pooled", "drain_5pct_s", "drain_1pct_s")
	sub("confidence", m["confidence"].(map[string]any), "grade", "reasons")
	top := m["top_contributors"].([]any)
	if len(top) == 0 {
		t.Fatal("no top contributors")
	}
	sub("top_contributors[0]", top[0].(map[string]any), "identity", "share", "endpoint", "contribution")
	if g := m["confidence"].(map[string]any)["grade"]; g != "High" && g != "Medium" && g != "Low" {
		t.Errorf("confidence grade %v", g)
	}
}

// TestIntended checks the intended share: time-averaged over weight and
// health changes, fail-open when all are down, failover by priority,
// latency by capacity.
func TestIntended(t *testing.T) {
	cfg := testConfig()
	cfg.Services = append(cfg.Services, Service{Name: "db.gslb.example.test.", Policy: "failover", TTL: 30, Endpoints: []Endpoint{
		{Name: "p", Region: "us-east", Weight: 1, Priority: 1}, {Name: "s", Region: "eu-west", Weight: 1, Priority: 2},
	}})
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := int64(5 * time.Minute)
	for svc := range cfg.Services {
		steady(r, svc, 10, t0, t0+3*w, uint64(svc+1), func(i int, _ int64) uint64 { return 1 })
	}
	// api: euw1 drained (weight 0) half way through window 1, both down
	// for all of window 2 (fail-open: 50/50).
	r.RecordHealth(t0+w+w/2, 0, 1, true, 0)
	r.RecordHealth(t0+2*w, 0, 0, false, 1)
	r.RecordHealth(t0+2*w, 0, 1, false, 1)
	// db: the primary fails at the start of window 1.
	r.RecordHealth(t0+w, 2, 0, false, 1)
	intended := func(svc string, end int64) []float64 {
		rep, err := r.Report(svc, 5*time.Minute, end, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []float64
		for _, e := range rep.Endpoints {
			out = append(out, e.Intended)
		}
		return out
	}
	check := func(name string, got, want []float64) {
		t.Helper()
		for j := range want {
			if math.Abs(got[j]-want[j]) > 1e-9 {
				t.Errorf("%s: intended %v, want %v", name, got, want)
				return
			}
		}
	}
	check("api window 0", intended("api.gslb.example.test.", t0+w), []float64{0.5, 0.5})
	check("api window 1 (drained half way)", intended("api.gslb.example.test.", t0+2*w), []float64{0.75, 0.25})
	check("api window 2 (all down: fail-open)", intended("api.gslb.example.test.", t0+3*w), []float64{0.5, 0.5})
	check("web (latency: by capacity)", intended("web.gslb.example.test.", t0+w), []float64{0.25, 0.25, 0.5})
	check("db window 0 (failover: primary)", intended("db.gslb.example.test.", t0+w), []float64{1, 0})
	check("db window 1 (primary down)", intended("db.gslb.example.test.", t0+2*w), []float64{0, 1})
}

// TestReportSpan checks which windows a report covers, and its errors.
func TestReportSpan(t *testing.T) {
	r, _ := sampleRecorder(t)
	w := int64(5 * time.Minute)
	mid := t0 + 4*w + w/2
	rep, err := r.Report("api.gslb.example.test.", 5*time.Minute, mid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.From.Equal(time.Unix(0, t0+3*w)) || len(rep.Windows) != 2 {
		t.Errorf("5m at mid-window covers from %s, %d windows; want the previous window and the open one", rep.From, len(rep.Windows))
	}
	rep, err = r.Report("api.gslb.example.test.", time.Hour, t0+5*w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Window != "1h" || len(rep.Windows) != 5 {
		t.Errorf("1h report: window %q over %d windows, want 1h over the 5 recorded", rep.Window, len(rep.Windows))
	}
	if _, err := r.Report("nope.example.", 5*time.Minute, mid, nil); err == nil || !strings.Contains(err.Error(), `no service "nope.example."`) {
		t.Errorf("unknown service: %v", err)
	}
	for _, bad := range []time.Duration{time.Minute, 7 * time.Minute, 2 * time.Hour} {
		if _, err := r.Report("api.gslb.example.test.", bad, mid, nil); err == nil || !strings.Contains(err.Error(), "is not a multiple of 5m0s up to 1h0m0s") {
			t.Errorf("window %s: %v", bad, err)
		}
	}
}

// TestUpdateKeepsWhatMatches reloads with services reordered, an endpoint
// renamed and one service gone, and checks what is kept.
func TestUpdateKeepsWhatMatches(t *testing.T) {
	r, now := sampleRecorder(t)
	before, err := r.Report("api.gslb.example.test.", time.Hour, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	api := cfg.Services[0]
	api.Endpoints = []Endpoint{{Name: "apse1", Region: "ap", Weight: 1}, api.Endpoints[1], {Name: "use1-new", Region: "us-east", Weight: 1}}
	cfg.Services = []Service{{Name: "new.gslb.example.test.", Policy: "weighted", TTL: 30, Endpoints: []Endpoint{{Name: "x", Weight: 1}}}, api}
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	after, err := r.Report("api.gslb.example.test.", time.Hour, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.Endpoints[1].Name != "euw1" || after.Endpoints[1].Answers != before.Endpoints[1].Answers {
		t.Errorf("euw1 answers %d after the reload, %d before", after.Endpoints[1].Answers, before.Endpoints[1].Answers)
	}
	if after.Endpoints[0].Answers != 0 || after.Endpoints[2].Answers != 0 {
		t.Errorf("new endpoints start with answers %d and %d, want 0", after.Endpoints[0].Answers, after.Endpoints[2].Answers)
	}
	if _, err := r.Report("web.gslb.example.test.", time.Hour, now, nil); err == nil {
		t.Error("a service dropped by the reload still reports")
	}
	// Answers recorded after the reload use the new indexes.
	r.Record(Answer{Service: 1, Source: addr(7), Endpoints: 1 << 2, TTL: 30, At: now - 1})
	after, _ = r.Report("api.gslb.example.test.", time.Hour, now, nil)
	if after.Endpoints[2].Answers != 1 {
		t.Errorf("use1-new has %d answers after one was recorded", after.Endpoints[2].Answers)
	}
	bad := testConfig()
	bad.Services[1].Name = bad.Services[0].Name
	if err := r.Update(bad); err == nil || !strings.Contains(err.Error(), "is listed twice") {
		t.Errorf("duplicate service: %v", err)
	}
	if _, err := r.Report("api.gslb.example.test.", time.Hour, now, nil); err != nil {
		t.Errorf("a rejected reload broke the recorder: %v", err)
	}
}

// TestPeers checks that a report merges peers' exports, uses the newest of
// each node and ignores this node's own name.
func TestPeers(t *testing.T) {
	cfg := testConfig()
	a, _ := New(cfg)
	cfg.Node = "n2"
	b, _ := New(cfg)
	w := int64(5 * time.Minute)
	steady(a, 0, 10, t0, t0+2*w, 1, func(int, int64) uint64 { return 1 })
	steady(b, 0, 10, t0, t0+w, 2, func(int, int64) uint64 { return 2 })
	old, _ := b.Export(t0 + w)
	steady(b, 0, 10, t0+w, t0+2*w, 3, func(int, int64) uint64 { return 2 })
	newer, _ := b.Export(t0 + 2*w)
	ownB, _ := a.Export(t0 + 2*w)
	var peers []*Export
	for _, blob := range [][]byte{old, newer, ownB} {
		x, err := DecodeExport(blob)
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, x)
	}
	rep, err := a.Report("api.gslb.example.test.", time.Hour, t0+2*w, peers)
	if err != nil {
		t.Fatal(err)
	}
	bRep, _ := b.Report("api.gslb.example.test.", time.Hour, t0+2*w, nil)
	aRep, _ := a.Report("api.gslb.example.test.", time.Hour, t0+2*w, nil)
	if rep.Endpoints[1].Answers != bRep.Endpoints[1].Answers || rep.Endpoints[0].Answers != aRep.Endpoints[0].Answers {
		t.Errorf("merged answers %d/%d, want a's %d and b's newest %d", rep.Endpoints[0].Answers, rep.Endpoints[1].Answers,
			aRep.Endpoints[0].Answers, bRep.Endpoints[1].Answers)
	}
	if strings.Join(rep.Nodes, ",") != "n1,n2" {
		t.Errorf("nodes %v, want n1,n2", rep.Nodes)
	}
	for _, win := range rep.Windows {
		if len(win.Nodes) != 2 {
			t.Errorf("window %s: nodes %v, want both", win.Start, win.Nodes)
		}
	}
}

func TestWriteText(t *testing.T) {
	r, now := sampleRecorder(t)
	rep, err := r.Report("web.gslb.example.test.", time.Hour, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep.Alarms = append(rep.Alarms, Alarm{Kind: AlarmHot, Endpoint: "a", Detail: "test detail"})
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"web.gslb.example.test.", "skew index (TVD)", "(answered: decisions, not traffic)",
		"intended  |", "estimated |", "HOT a: test detail", "top contributors", "confidence " + rep.Confidence.Grade, "ap-south"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "estimated |") != 3 || !strings.Contains(out, "[") {
		t.Errorf("want an estimated bar with its bracket per endpoint:\n%s", out)
	}
}

// TestIdentityStrings checks the display of identities with and without
// ECS.
func TestIdentityStrings(t *testing.T) {
	if got := identityString(netip.MustParseAddr("198.51.100.7"), netip.Prefix{}); got != "198.51.100.7" {
		t.Errorf("got %q", got)
	}
	if got := identityString(netip.MustParseAddr("198.51.100.7"), netip.MustParsePrefix("203.0.113.0/24")); got != "198.51.100.7 ecs 203.0.113.0/24" {
		t.Errorf("got %q", got)
	}
}

// TestIdleServiceRaisesNoAlarm: windows without answers are no evidence, so
// a service nobody asked for during three windows (or more) raises no alarm,
// however far its (empty) estimate is from the intent.
func TestIdleServiceRaisesNoAlarm(t *testing.T) {
	r, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	w := int64(5 * time.Minute)
	for j := range 2 {
		r.RecordHealth(t0, 0, j, true, 1)
	}
	r.Flush()
	for _, now := range []int64{t0 + 4*w, t0 + 11*w + w/2} {
		for _, window := range []time.Duration{5 * time.Minute, time.Hour} {
			rep, err := r.Report("api.gslb.example.test.", window, now, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Alarms) != 0 {
				t.Errorf("idle service, %s report at +%dm: alarms %+v, want none", window, (now-t0)/int64(time.Minute), rep.Alarms)
			}
		}
	}
}
