package sim

// One test per acceptance criterion of SKEW.md ("The simulator"). Each logs
// a line "ACCEPTANCE | criterion | figure | pass" for the acceptance table.

import (
	"fmt"
	"math"
	"testing"
	"time"

	"meridian/skew"
)

func accept(t *testing.T, criterion, figure string, pass bool) {
	t.Helper()
	verdict := "pass"
	if !pass {
		verdict = "FAIL"
	}
	t.Logf("ACCEPTANCE | %s | %s | %s", criterion, figure, verdict)
}

// zipfTotal is the total demand that gives the top resolver of n
// Zipf(alpha) resolvers top lookups per second.
func zipfTotal(n int, alpha, top float64) float64 {
	var h float64
	for i := 1; i <= n; i++ {
		h += math.Pow(float64(i), -alpha)
	}
	return top * h
}

// headlineWindows runs the headline scenarios — Zipf α ∈ {0.8, 1.0, 1.3},
// weighted and latency policies, the standard population — and returns
// every 5-minute window.
func headlineWindows(t *testing.T) []result {
	hours := 3
	if testing.Short() {
		hours = 2
	}
	var all []result
	for i, alpha := range []float64{0.8, 1.0, 1.3} {
		for _, svc := range []skew.Service{weighted2(), latency3()} {
			pop := population(uint64(10+i), 300, alpha, zipfTotal(300, alpha, 10), regionByRank)
			s, err := New(Config{Seed: uint64(100 + i), Service: svc, Prefer: prefer3, Jitter: 2 * time.Millisecond}, pop)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, run(t, s, hours*12)...)
		}
	}
	return all
}

// headline checks SKEW.md's headline criterion for the share pick returns
// per window: among windows with U ≤ 10 %, the fraction with
// TVD(share, truth) ≤ 0.02.
func headline(ws []result, pick func(result) []float64) (frac float64, n int) {
	good := 0
	for _, r := range ws {
		if r.unattrib > 0.10 {
			continue
		}
		n++
		if TVD(pick(r), r.truth) <= 0.02 {
			good++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return float64(good) / float64(n), n
}

// TestAcceptanceHeadline: TVD(Ŝ, truth) ≤ 0.02 in ≥ 95 % of 5-min windows
// when U ≤ 10 %; the bracket covers the truth in ≥ 95 % of windows. The
// same check run on the answered share must fail, which shows the test can.
func TestAcceptanceHeadline(t *testing.T) {
	ws := headlineWindows(t)
	frac, n := headline(ws, func(r result) []float64 { return r.est })
	if n < len(ws)/4 {
		t.Errorf("only %d of %d windows have U ≤ 10%%: the criterion would be vacuous", n, len(ws))
	}
	covered := 0
	for _, r := range ws {
		if covers(r) {
			covered++
		}
	}
	cov := float64(covered) / float64(len(ws))
	accept(t, "headline: TVD(Ŝ, truth) ≤ 0.02 in ≥ 95% of windows with U ≤ 10%",
		fmt.Sprintf("%.1f%% of %d windows (of %d)", 100*frac, n, len(ws)), frac >= 0.95)
	accept(t, "headline: bracket covers the truth in ≥ 95% of windows",
		fmt.Sprintf("%.1f%% of %d windows", 100*cov, len(ws)), cov >= 0.95)
	if frac < 0.95 {
		t.Errorf("TVD(Ŝ, truth) ≤ 0.02 in %.1f%% of %d windows with U ≤ 10%%, want ≥ 95%%", 100*frac, n)
	}
	if cov < 0.95 {
		t.Errorf("the bracket covers the truth in %.1f%% of %d windows, want ≥ 95%%", 100*cov, len(ws))
	}
	naive, _ := headline(ws, func(r result) []float64 { return r.ans })
	accept(t, "headline check fails on the answered share (the test can fail)",
		fmt.Sprintf("answered share meets TVD ≤ 0.02 in %.1f%% of the same windows", 100*naive), naive < 0.95)
	if naive >= 0.95 {
		t.Errorf("the answered share passes the headline check too (%.1f%%): the check cannot tell them apart", 100*naive)
	}
	var worst float64
	for _, r := range ws {
		if r.unattrib <= 0.10 {
			worst = max(worst, TVD(r.est, r.truth))
		}
	}
	t.Logf("worst TVD(Ŝ, truth) with U ≤ 10%%: %.4f", worst)
}

// TestAcceptanceAnsweredMissesStructural: the answered share must be shown
// to miss structural skew (latency scenario: error > 0.15). SKEW.md's
// scenario: 20 large ISPs near us-east under latency routing, on top of
// 300 small resolvers spread over the regions 40/40/20.
func TestAcceptanceAnsweredMissesStructural(t *testing.T) {
	pop := &Population{}
	rnd := newRand(21)
	pop.AddZipf(rnd, 300, 0.8, 20, regionByRank, mixed)
	for i := 0; i < 20; i++ {
		pop.Add(Identity{Region: 0, Kind: "large-isp"}, Cache{Lambda: 1})
	}
	s, err := New(Config{Seed: 22, Service: latency3(), Prefer: prefer3, Jitter: 2 * time.Millisecond}, pop)
	if err != nil {
		t.Fatal(err)
	}
	hours := 2
	ws := run(t, s, hours*12)[3:] // from 15 minutes on
	var ansErr, estErr, truth, ans, est float64
	good := 0
	for _, r := range ws {
		ansErr += math.Abs(r.ans[0] - r.truth[0])
		estErr += math.Abs(r.est[0] - r.truth[0])
		truth += r.truth[0]
		ans += r.ans[0]
		est += r.est[0]
		if TVD(r.est, r.truth) <= 0.02 {
			good++
		}
	}
	n := float64(len(ws))
	ansErr, estErr = ansErr/n, estErr/n
	t.Logf("us-east: intended 0.40, true %.3f, answered %.3f, estimated %.3f (mean over %d windows)", truth/n, ans/n, est/n, len(ws))
	accept(t, "answered share misses structural skew (latency: error > 0.15)",
		fmt.Sprintf("answered error %.3f, estimate error %.3f (us-east: true %.2f, answered %.2f, estimated %.2f)",
			ansErr, estErr, truth/n, ans/n, est/n), ansErr > 0.15 && estErr <= 0.02)
	if ansErr <= 0.15 {
		t.Errorf("answered share error %.3f, want > 0.15 (the scenario does not show structural skew)", ansErr)
	}
	if estErr > 0.02 {
		t.Errorf("estimated share error %.3f, want ≤ 0.02", estErr)
	}
	t.Logf("TVD(Ŝ, truth) ≤ 0.02 in %.0f%% of the windows", 100*float64(good)/n)
	last := ws[len(ws)-1].rep
	if !last.Alarm(skew.AlarmHot, "use1") {
		t.Errorf("no HOT alarm for use1 (estimated %.2f, bracket [%.2f, %.2f], intended %.2f); alarms %v",
			last.Endpoints[0].Estimated, last.Endpoints[0].Lo, last.Endpoints[0].Hi, last.Endpoints[0].Intended, last.Alarms)
	}
}

// clampRun is the population of the clamp and demand criteria after two
// hours, with its identities' estimates.
func clampRun(t *testing.T) (*Population, []skew.IdentityEstimate) {
	pop := &Population{}
	rnd := newRand(31)
	mix := Mix{Clamp60: 0.1, Clamp300: 0.1, Clamp600: 0.05, Prefetch: 0.1}
	pop.AddZipf(rnd, 300, 1.0, zipfTotal(300, 1.0, 10), regionByRank, mix)
	pop.AddPublicECS(200, 6, regionByRank)
	s, err := New(Config{Seed: 32, Service: weighted2(), Jitter: 2 * time.Millisecond}, pop)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s, 24)
	ids, err := s.Recorders[0].Identities(weighted2().Name, s.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pop, ids
}

// identityIndex maps the report's identity strings to the population.
func identityIndex(pop *Population) map[string]int {
	m := map[string]int{}
	for i, id := range pop.Identities {
		k := id.Source.String()
		if id.ECS.IsValid() {
			k += " ecs " + id.ECS.String()
		}
		m[k] = i
	}
	return m
}

// TestAcceptanceClampDetection: clamp detection precision ≥ 0.95, recall
// ≥ 0.90 for identities with ≥ 4 gaps.
func TestAcceptanceClampDetection(t *testing.T) {
	pop, ids := clampRun(t)
	index := identityIndex(pop)
	var tp, fp, fn, n int
	for _, e := range ids {
		i, ok := index[e.Identity]
		if !ok {
			t.Fatalf("report names %s, not in the population", e.Identity)
		}
		if e.Gaps < 4 {
			continue
		}
		n++
		truly := pop.Caches[pop.Identities[i].Caches[0]].Behaviour == Clamp
		said := e.Class == "clamped"
		switch {
		case truly && said:
			tp++
		case said:
			fp++
			t.Logf("false positive: %s (%s, λ %.3f, %d gaps, floor %.1f s, p %.2g)", e.Identity, pop.Identities[i].Kind, pop.Demand(i), e.Gaps, e.FloorS, e.PValue)
		case truly:
			fn++
			c := pop.Caches[pop.Identities[i].Caches[0]]
			t.Logf("missed: %s (clamp %.0f s, λ %.3f, %d gaps, floor %.1f s, p %.2g, class %s)", e.Identity, c.Clamp, c.Lambda, e.Gaps, e.FloorS, e.PValue, e.Class)
		}
	}
	precision := float64(tp) / float64(max(tp+fp, 1))
	recall := float64(tp) / float64(max(tp+fn, 1))
	accept(t, "clamp detection: precision ≥ 0.95, recall ≥ 0.90 (identities with ≥ 4 gaps)",
		fmt.Sprintf("precision %.3f, recall %.3f (%d clampers, %d identities)", precision, recall, tp+fn, n),
		precision >= 0.95 && recall >= 0.90)
	if tp+fn < 30 {
		t.Errorf("only %d clamping identities with ≥ 4 gaps: too few to judge", tp+fn)
	}
	if precision < 0.95 || recall < 0.90 {
		t.Errorf("clamp detection precision %.3f recall %.3f, want ≥ 0.95 and ≥ 0.90", precision, recall)
	}
}

// TestAcceptanceDemand: median |ln(λ̂/λ)| ≤ 0.2 for non-saturated
// identities with ≥ 20 gaps.
func TestAcceptanceDemand(t *testing.T) {
	pop, ids := clampRun(t)
	index := identityIndex(pop)
	var errs []float64
	for _, e := range ids {
		if e.Gaps < 20 || e.Class == "saturated" || e.Class == "pooled" {
			continue
		}
		errs = append(errs, math.Abs(math.Log(e.Demand/pop.Demand(index[e.Identity]))))
	}
	med := median(errs)
	accept(t, "demand: median |ln(λ̂/λ)| ≤ 0.2 (non-saturated, ≥ 20 gaps)",
		fmt.Sprintf("median %.3f over %d identities", med, len(errs)), med <= 0.2)
	if len(errs) < 100 {
		t.Errorf("only %d identities qualify: too few to judge", len(errs))
	}
	if med > 0.2 {
		t.Errorf("median |ln(λ̂/λ)| = %.3f, want ≤ 0.2", med)
	}
}

// TestAcceptanceNoActivePassiveFalsePositive: no ACTIVE_PASSIVE false
// positive over 1,000 balanced windows.
func TestAcceptanceNoActivePassiveFalsePositive(t *testing.T) {
	pop := &Population{}
	pop.AddZipf(newRand(41), 60, 1.0, zipfTotal(60, 1.0, 3), func(int) int { return 0 }, mixed)
	s, err := New(Config{Seed: 42, Service: weighted2(), Jitter: 2 * time.Millisecond}, pop)
	if err != nil {
		t.Fatal(err)
	}
	const windows = 1000
	alarms, other := 0, map[string]int{}
	for i := 0; i < windows; i++ {
		now := s.Step()
		rep, err := s.Report(window, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range rep.Alarms {
			if a.Kind == skew.AlarmActivePassive {
				alarms++
				_, truth := s.Truth(now-int64(window), now)
				t.Logf("window %d: %s %s (%s); true share %.3v", i, a.Kind, a.Endpoint, a.Detail, truth)
			} else {
				other[a.Kind]++
			}
		}
	}
	accept(t, "no ACTIVE_PASSIVE false positive over 1,000 balanced windows",
		fmt.Sprintf("%d false positives in %d windows", alarms, windows), alarms == 0)
	t.Logf("other alarms over the run: %v", other)
	if alarms != 0 {
		t.Errorf("%d ACTIVE_PASSIVE alarms over %d balanced windows", alarms, windows)
	}
}

// TestAcceptanceActivePassiveDetection: ACTIVE_PASSIVE is raised within 3
// windows of a region's true share falling below a quarter of intent. The
// eu-west clients of a latency-routed service are moved to us-east (a
// route change) while eu-west stays healthy and intended at 50 %.
func TestAcceptanceActivePassiveDetection(t *testing.T) {
	svc := skew.Service{Name: "app.gslb.example.test.", Policy: "latency", TTL: 30, Endpoints: []skew.Endpoint{
		{Name: "use1", Region: "us-east", Weight: 1, Capacity: 1},
		{Name: "euw1", Region: "eu-west", Weight: 1, Capacity: 1},
	}}
	pop := &Population{}
	pop.AddZipf(newRand(51), 150, 1.0, zipfTotal(150, 1.0, 3), func(rank int) int { return rank % 2 }, mixed)
	move := 90 * time.Minute
	s, err := New(Config{Seed: 52, Service: svc, Prefer: [][]int{{0, 1}, {1, 0}}, Jitter: 2 * time.Millisecond,
		Moves: []Move{{At: move, Region: 1, Prefer: []int{0, 1}}}}, pop)
	if err != nil {
		t.Fatal(err)
	}
	firstBad, detected := -1, -1
	for i := 0; i < 36; i++ {
		now := s.Step()
		rep, err := s.Report(window, now)
		if err != nil {
			t.Fatal(err)
		}
		_, truth := s.Truth(now-int64(window), now)
		alarm := rep.Alarm(skew.AlarmActivePassive, "euw1")
		if alarm && now <= T0+int64(move) {
			t.Errorf("window %d: ACTIVE_PASSIVE before the move (true share %.3f)", i, truth[1])
		}
		if firstBad < 0 && truth[1] < 0.5/4 {
			firstBad = i
		}
		if alarm && detected < 0 {
			detected = i
		}
		if firstBad >= 0 && i >= firstBad+2 {
			break
		}
	}
	ok := firstBad >= 0 && detected >= 0 && detected <= firstBad+2
	accept(t, "ACTIVE_PASSIVE detected within 3 windows of the true share falling below a quarter of intent",
		fmt.Sprintf("true share below 12.5%% from window %d, alarm in window %d", firstBad, detected), ok)
	if !ok {
		t.Errorf("true share below a quarter of intent from window %d, ACTIVE_PASSIVE from window %d: want within 3 windows", firstBad, detected)
	}
}

// TestAcceptanceSpoofedFlood: under a spoofed flood of random sources the
// top-k keeps the identities carrying 95 % of true demand and the headline
// error stays ≤ 0.03.
func TestAcceptanceSpoofedFlood(t *testing.T) {
	pop := population(61, 300, 1.0, zipfTotal(300, 1.0, 10), regionByRank)
	rate := 1000.0
	if testing.Short() {
		rate = 300
	}
	from, to := 60*time.Minute, 80*time.Minute
	s, err := New(Config{Seed: 62, Service: weighted2(), TopK: 1000, Jitter: 2 * time.Millisecond,
		Floods: []Flood{{From: from, To: to, Rate: rate}}}, pop)
	if err != nil {
		t.Fatal(err)
	}
	ws := run(t, s, int(to/window))
	worst := 0.0
	for _, r := range ws[int(from/window):] {
		d := TVD(r.est, r.truth)
		worst = max(worst, d)
		t.Logf("flood window at %s: TVD %.4f, U %.2f, confidence %s, unverified %d", time.Duration(r.now-T0), d, r.unattrib, r.rep.Confidence.Grade, r.rep.Unverified)
	}
	// The identities that carry 95 % of the demand, heaviest first.
	order := make([]int, len(pop.Identities))
	var total float64
	for i := range order {
		order[i] = i
		total += pop.Demand(i)
	}
	sortBy(order, func(i int) float64 { return -pop.Demand(i) })
	var covered float64
	need, missing := 0, 0
	for _, i := range order {
		if covered >= 0.95*total {
			break
		}
		covered += pop.Demand(i)
		need++
		id := pop.Identities[i]
		if !s.Recorders[0].Holds(id.Source, 0, id.ECS) {
			missing++
			t.Logf("not held: %s (λ %.3f)", id.Source, pop.Demand(i))
		}
	}
	st := s.Recorders[0].Stats()
	accept(t, "spoofed flood: top-k keeps the identities carrying 95% of demand; headline error ≤ 0.03",
		fmt.Sprintf("%d spoofed queries: %d of the %d heaviest identities held, worst TVD %.4f", s.Spoofed, need-missing, need, worst),
		missing == 0 && worst <= 0.03)
	t.Logf("%d spoofed queries, %d identities tracked", s.Spoofed, st.Tracked)
	if st.Tracked > len(pop.Identities) {
		t.Errorf("%d identities tracked, more than the %d real ones: spoofed sources got in", st.Tracked, len(pop.Identities))
	}
	if missing > 0 {
		t.Errorf("%d of the %d identities carrying 95%% of the demand are not in the top-k after the flood", missing, need)
	}
	if worst > 0.03 {
		t.Errorf("headline error %.4f during the flood, want ≤ 0.03", worst)
	}
}

// TestAcceptanceMerge: a report merged from several nodes equals the
// single-node report on counters and is within 0.02 TVD on shares. Every
// node reports each window (as for its gauges). Counters are compared in
// every window; shares once the first hour is over: until then the nodes
// and the single recorder admit identities at different moments (a cache
// clamping to 600 s reaches each of three nodes about every half hour),
// and the worst first-hour difference is logged.
func TestAcceptanceMerge(t *testing.T) {
	pop := population(71, 300, 1.0, zipfTotal(300, 1.0, 10), regionByRank)
	s, err := New(Config{Seed: 72, Service: latency3(), Prefer: prefer3, Nodes: 3, Single: true, Jitter: 2 * time.Millisecond}, pop)
	if err != nil {
		t.Fatal(err)
	}
	worst, early, checked := 0.0, 0.0, 0
	for i := 0; i < 24; i++ {
		now := s.Step()
		merged, err := s.ReportAll(window, now)
		if err != nil {
			t.Fatal(err)
		}
		single, err := s.Single.Report(latency3().Name, window, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(merged.Nodes) != 3 {
			t.Errorf("window %d: nodes %v, want all three", i, merged.Nodes)
		}
		if merged.Answers != single.Answers {
			t.Errorf("window %d: merged report counts %d answers, single node %d", i, merged.Answers, single.Answers)
		}
		var a, b []float64
		for j := range merged.Endpoints {
			m, o := merged.Endpoints[j], single.Endpoints[j]
			if m.Answers != o.Answers || m.Answered != o.Answered || m.Intended != o.Intended {
				t.Errorf("window %d %s: merged answers %d (%.4f) intended %.4f, single %d (%.4f) %.4f",
					i, m.Name, m.Answers, m.Answered, m.Intended, o.Answers, o.Answered, o.Intended)
			}
			a, b = append(a, m.Estimated), append(b, o.Estimated)
		}
		d := TVD(a, b)
		if i < 12 {
			early = max(early, d)
			continue
		}
		worst = max(worst, d)
		checked++
		if d > 0.02 {
			t.Errorf("window %d: TVD(merged, single) = %.4f, want ≤ 0.02", i, d)
		}
	}
	t.Logf("worst TVD(merged, single) in the first hour: %.4f", early)
	accept(t, "merged report equals the single-node report on counters, within 0.02 TVD on shares",
		fmt.Sprintf("counters equal in 24 windows; worst share TVD %.4f over the %d windows of the second hour (3 nodes; first hour %.4f)",
			worst, checked, early), !t.Failed())
}
