package probe

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"meridian/config"
	"meridian/internal/certtest"
)

// TestSchedulerMetrics runs the Scheduler with metrics over two https
// targets, one a real mTLS server and one a closed port, and checks every
// probe metric against the results the observer saw: the counts by result
// and reason, the success gauge, the phase histograms, the certificate
// expiry, the series dropped for a removed target, and promlint's verdict.
func TestSchedulerMetrics(t *testing.T) {
	const interval = 50 * time.Millisecond
	ca := certtest.New(t)
	srv := startHTTPS(t, ca.ServerTLS(t), true, okHandler)
	up, down := targetOf(t, srv.Listener.Addr()), targetOf(t, closedPort(t))
	up.Check, down.Check = "api", "gone"
	checks := map[string]config.Check{}
	for _, tg := range []Target{up, down} {
		c := schedCheck("https", tg.Port, interval, time.Second)
		c.Path, c.ExpectStatus = "/healthz", []int{200}
		checks[tg.Check] = c
	}
	cfg := schedConfig(checks, []config.Endpoint{schedEndpoint("api", "127.0.0.1"), schedEndpoint("gone", "127.0.0.1")})
	cfg.TLS = clientFiles(t, ca, ca, "probe")

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	rec := &schedRecorder{}
	s := NewScheduler(SchedulerOptions{Observer: rec, Metrics: m})
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	stop := runSched(t, s, time.Second)
	waitFor(t, 5*time.Second, "both targets probed twice", func() bool { return len(rec.of(up)) >= 2 && len(rec.of(down)) >= 2 })
	stop() // every probe has returned: the metrics hold exactly what rec saw

	ups, downs := rec.of(up), rec.of(down)
	for _, s := range ups {
		if !s.r.OK {
			t.Fatalf("a probe of the mTLS server failed: %s %s", s.r.Reason, s.r.Detail)
		}
	}
	for _, s := range downs {
		if s.r.OK || s.r.Reason != ReasonRefused {
			t.Fatalf("a probe of the closed port: OK=%v reason %q, want refused", s.r.OK, s.r.Reason)
		}
	}
	counter := func(check, result, reason string) int {
		return int(testutil.ToFloat64(m.total.WithLabelValues(check, result, reason)))
	}
	if got := counter("api", "success", "none"); got != len(ups) {
		t.Errorf(`meridian_probes_total{check="api",result="success",reason="none"} = %d, want %d`, got, len(ups))
	}
	if got := counter("gone", "failure", "refused"); got != len(downs) {
		t.Errorf(`meridian_probes_total{check="gone",result="failure",reason="refused"} = %d, want %d`, got, len(downs))
	}
	if n := testutil.CollectAndCount(m.total); n != 2 {
		t.Errorf("meridian_probes_total has %d series, want 2 (one per check and outcome)", n)
	}
	if got := testutil.ToFloat64(m.success.WithLabelValues("api", up.String())); got != 1 {
		t.Errorf("meridian_probe_success of %s = %v, want 1", up, got)
	}
	if got := testutil.ToFloat64(m.success.WithLabelValues("gone", down.String())); got != 0 {
		t.Errorf("meridian_probe_success of %s = %v, want 0", down, got)
	}
	last := ups[len(ups)-1].r
	if got := testutil.ToFloat64(m.expiry.WithLabelValues("api", up.String())); got != float64(last.CertExpiry.Unix()) || got == 0 {
		t.Errorf("meridian_probe_cert_expiry_timestamp_seconds of %s = %v, want %d", up, got, last.CertExpiry.Unix())
	}

	// Phases: every probe of the server has each phase, the refused ones
	// only a total (connect never completed).
	hist := histogramCounts(t, reg, "meridian_probe_duration_seconds")
	for key, want := range map[string]int{
		"api/connect": len(ups), "api/tls": len(ups), "api/first_byte": len(ups), "api/total": len(ups),
		"gone/total": len(downs),
	} {
		if hist[key] != want {
			t.Errorf("meridian_probe_duration_seconds{%s} has %d observations, want %d", key, hist[key], want)
		}
		delete(hist, key)
	}
	for key, n := range hist {
		t.Errorf("unexpected meridian_probe_duration_seconds series %s with %d observations", key, n)
	}

	lintProbeMetrics(t, reg)

	// A target no longer probed keeps no per-target series.
	m.Forget(up)
	for _, f := range gather(t, reg) {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "target" && l.GetValue() == up.String() {
					t.Errorf("%s still has a series for the forgotten target %s", f.GetName(), up)
				}
			}
		}
	}
}

// histogramCounts returns the sample count of every series of a histogram,
// keyed "check/phase".
func histogramCounts(t *testing.T, reg *prometheus.Registry, name string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, f := range gather(t, reg) {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["check"]+"/"+labels["phase"]] = int(mt.GetHistogram().GetSampleCount())
		}
	}
	return out
}

func gather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// lintProbeMetrics runs promlint over every probe metric (names, units,
// help) and checks their label names: only config (check, target) and
// closed sets (phase, result, reason).
func lintProbeMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	families := gather(t, reg)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if !strings.Contains(" check target phase result reason ", " "+l.GetName()+" ") {
					t.Errorf("%s has label %q: only check, target, phase, result and reason are allowed", f.GetName(), l.GetName())
				}
			}
		}
	}
	for _, want := range []string{"meridian_probe_success", "meridian_probe_duration_seconds",
		"meridian_probe_cert_expiry_timestamp_seconds", "meridian_probes_total"} {
		if !names[want] {
			t.Errorf("%s was not exported", want)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
