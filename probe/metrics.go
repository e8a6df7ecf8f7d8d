package probe

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the probe metrics. Labels come from the configuration (check,
// target = "check/address:port") or closed sets (phase, result, reason).
type Metrics struct {
	success  *prometheus.GaugeVec
	duration *prometheus.HistogramVec
	expiry   *prometheus.GaugeVec
	total    *prometheus.CounterVec
}

// NewMetrics creates the probe metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_probe_success",
			Help: "1 if the last probe of the target succeeded, else 0."}, []string{"check", "target"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meridian_probe_duration_seconds",
			Help:    "Duration of each probe phase: connect, tls, first_byte and total.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 10)}, []string{"check", "phase"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_probe_cert_expiry_timestamp_seconds",
			Help: "Earliest NotAfter of the target's server certificate chain, as a Unix time."}, []string{"check", "target"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_probes_total",
			Help: "Probes run, by result (success or failure) and failure reason."}, []string{"check", "result", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.success, m.duration, m.expiry, m.total)
	}
	return m
}

// observe records one result. A nil Metrics records nothing.
func (m *Metrics) observe(t Target, r Result) {
	if m == nil {
		return
	}
	target := t.String()
	result, reason := "success", "none"
	if !r.OK {
		result, reason = "failure", string(r.Reason)
	}
	m.total.WithLabelValues(t.Check, result, reason).Inc()
	m.success.WithLabelValues(t.Check, target).Set(b2f(r.OK))
	for phase, d := range map[string]float64{"connect": r.Phases.Connect.Seconds(),
		"tls": r.Phases.TLSHandshake.Seconds(), "first_byte": r.Phases.FirstByte.Seconds()} {
		if d > 0 {
			m.duration.WithLabelValues(t.Check, phase).Observe(d)
		}
	}
	m.duration.WithLabelValues(t.Check, "total").Observe(r.Duration.Seconds())
	if !r.CertExpiry.IsZero() {
		m.expiry.WithLabelValues(t.Check, target).Set(float64(r.CertExpiry.Unix()))
	}
}

// Forget drops the per-target series of a target no longer probed.
func (m *Metrics) Forget(t Target) {
	if m == nil {
		return
	}
	m.success.DeleteLabelValues(t.Check, t.String())
	m.expiry.DeleteLabelValues(t.Check, t.String())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
