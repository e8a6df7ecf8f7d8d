package sim

// Behaviours of the report beyond the acceptance criteria: drain times,
// the low-discrepancy correction, the other alarms and the confidence
// grade, each against the simulator's ground truth.

import (
	"math"
	"strings"
	"testing"
	"time"

	"meridian/skew"
)

// TestDrainTimes drains an endpoint (weight 0) and compares the report's
// Δ5% and Δ1% with the caches' true holds at that moment.
func TestDrainTimes(t *testing.T) {
	pop := population(81, 300, 1.0, zipfTotal(300, 1.0, 10), regionByRank)
	leave := 65 * time.Minute
	s, err := New(Config{Seed: 82, Service: weighted2(), Jitter: 2 * time.Millisecond,
		Changes: []Change{{At: leave, Endpoint: 1, Up: true, Weight: 0}}}, pop)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s, 13)
	s.RunUntil(T0 + int64(leave) + 1)
	d5, d1 := s.DrainTruth(1, T0+int64(leave))
	ws := run(t, s, 3) // to 80 minutes
	rep := ws[len(ws)-1].rep
	tt := rep.TTL
	t.Logf("drain of %s at %s: estimated Δ5%% %.0f s, Δ1%% %.0f s (complete %v); true %.0f s, %.0f s",
		tt.DrainEndpoint, tt.DrainAt, tt.Drain5, tt.Drain1, tt.DrainDone, d5, d1)
	if tt.DrainEndpoint != "euw1" || tt.DrainAt == nil || !tt.DrainAt.Equal(time.Unix(0, T0+int64(leave))) {
		t.Fatalf("drain endpoint %q at %v, want euw1 at %s", tt.DrainEndpoint, tt.DrainAt, time.Unix(0, T0+int64(leave)).UTC())
	}
	if !tt.DrainDone {
		t.Error("the drain is not complete 15 minutes later")
	}
	close := func(est, truth float64) bool { return math.Abs(est-truth) <= max(30, 0.25*truth) }
	if !close(tt.Drain5, d5) || !close(tt.Drain1, d1) {
		t.Errorf("estimated Δ5%% %.0f s and Δ1%% %.0f s, true %.0f s and %.0f s", tt.Drain5, tt.Drain1, d5, d1)
	}
	if e := rep.Endpoints[1]; e.Intended != 0 || rep.Alarm(skew.AlarmHot, "euw1") {
		t.Errorf("drained euw1: intended %.3f, alarms %v", e.Intended, rep.Alarms)
	}
}

// rmsSkew runs five heavy resolvers carrying all demand on a 50/50
// weighted service and returns the RMS over windows of the true share's
// distance from 0.5, and of the estimate's distance from the truth.
func rmsSkew(t *testing.T, low bool, windows int) (skew, estErr float64) {
	pop := &Population{}
	for i := 0; i < 5; i++ {
		pop.Add(Identity{Kind: "isp"}, Cache{Lambda: 10})
	}
	s, err := New(Config{Seed: 91, Service: weighted2(), LowDiscrepancy: low, Jitter: 2 * time.Millisecond}, pop)
	if err != nil {
		t.Fatal(err)
	}
	ws := run(t, s, windows)
	for _, r := range ws {
		skew += (r.truth[0] - 0.5) * (r.truth[0] - 0.5)
		estErr += (r.est[0] - r.truth[0]) * (r.est[0] - r.truth[0])
	}
	return math.Sqrt(skew / float64(len(ws))), math.Sqrt(estErr / float64(len(ws)))
}

// TestLowDiscrepancyHalvesRandomSkew: SKEW.md's cheap correction — with
// five resolvers carrying everything, the Weyl sequence roughly halves the
// random skew of per-query draws (SKEW.md: RMS 0.072 → 0.038).
func TestLowDiscrepancyHalvesRandomSkew(t *testing.T) {
	windows := 48
	random, estR := rmsSkew(t, false, windows)
	weyl, estW := rmsSkew(t, true, windows)
	t.Logf("RMS of the true share's skew over %d windows: random draws %.3f, Weyl sequence %.3f (estimate's RMS error %.4f, %.4f)",
		windows, random, weyl, estR, estW)
	if weyl > 0.7*random {
		t.Errorf("Weyl RMS %.3f is not well below the random draws' %.3f", weyl, random)
	}
	if estR > 0.02 || estW > 0.02 {
		t.Errorf("estimate's RMS error %.4f (random), %.4f (Weyl), want ≤ 0.02", estR, estW)
	}
}

// TestOtherAlarms: every client prefers us-east while eu-west is healthy,
// and three caches carry the demand: EFFECTIVELY_ACTIVE_PASSIVE and
// CONCENTRATED for use1, ACTIVE_PASSIVE for euw1 once three windows show
// it.
func TestOtherAlarms(t *testing.T) {
	svc := skew.Service{Name: "app.gslb.example.test.", Policy: "latency", TTL: 30, Endpoints: []skew.Endpoint{
		{Name: "use1", Region: "us-east", Weight: 1, Capacity: 1},
		{Name: "euw1", Region: "eu-west", Weight: 1, Capacity: 1},
	}}
	pop := &Population{}
	for i := 0; i < 3; i++ {
		pop.Add(Identity{Region: i % 2, Kind: "isp"}, Cache{Lambda: 5})
	}
	s, err := New(Config{Seed: 95, Service: svc, Prefer: [][]int{{0, 1}, {0, 1}}, Jitter: 2 * time.Millisecond}, pop)
	if err != nil {
		t.Fatal(err)
	}
	ws := run(t, s, 6)
	rep := ws[len(ws)-1].rep
	for _, want := range []struct{ kind, endpoint string }{
		{skew.AlarmEffectivelyActivePassive, "use1"},
		{skew.AlarmConcentrated, "use1"},
		{skew.AlarmActivePassive, "euw1"},
	} {
		if !rep.Alarm(want.kind, want.endpoint) {
			t.Errorf("no %s alarm for %s; alarms %v", want.kind, want.endpoint, rep.Alarms)
		}
	}
	if rep.Alarm(skew.AlarmHot, "euw1") || rep.Alarm(skew.AlarmConcentrated, "euw1") {
		t.Errorf("alarms for the idle endpoint: %v", rep.Alarms)
	}
	if rep.Confidence.Grade != "Low" || !strings.Contains(strings.Join(rep.Confidence.Reasons, ";"), "effective caches") {
		t.Errorf("three caches: confidence %s %v, want Low for the few effective caches", rep.Confidence.Grade, rep.Confidence.Reasons)
	}
}

// TestConfidence: many comparable caches that honour the TTL give High
// after an hour; a flood of spoofed sources gives Low, saying so.
func TestConfidence(t *testing.T) {
	pop := &Population{}
	pop.AddZipf(newRand(97), 200, 0.5, zipfTotal(200, 0.5, 1), func(int) int { return 0 }, Mix{})
	s, err := New(Config{Seed: 98, Service: weighted2(), Jitter: 2 * time.Millisecond,
		Floods: []Flood{{From: 70 * time.Minute, To: 75 * time.Minute, Rate: 300}}}, pop)
	if err != nil {
		t.Fatal(err)
	}
	ws := run(t, s, 15)
	calm, flood := ws[12].rep, ws[14].rep
	if calm.Confidence.Grade != "High" {
		t.Errorf("calm hour: confidence %s %v, want High", calm.Confidence.Grade, calm.Confidence.Reasons)
	}
	if flood.Confidence.Grade != "Low" || !strings.Contains(strings.Join(flood.Confidence.Reasons, ";"), "unverified flood") {
		t.Errorf("flood: confidence %s %v, want Low for the flood", flood.Confidence.Grade, flood.Confidence.Reasons)
	}
	if d := TVD(ws[14].est, ws[14].truth); d > 0.02 {
		t.Errorf("flood window: TVD(Ŝ, truth) %.4f", d)
	}
}
