package resolver

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"meridian/placement"
)

// Protocols a query arrives over, as metric label values and array indexes.
const (
	protoUDP = iota
	protoTCP
	protoCount
)

var protoNames = [protoCount]string{"udp", "tcp"}

// metricQtypes is the bounded label set for query types; others count as "other".
var metricQtypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeSOA, dns.TypeNS,
	dns.TypeTXT, dns.TypeMX, dns.TypeSRV, dns.TypePTR, dns.TypeCAA, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY}

// metricRcodes is the bounded label set for response codes; others count as "other".
var metricRcodes = []int{dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeRefused, dns.RcodeFormatError,
	dns.RcodeNotImplemented, dns.RcodeServerFailure, dns.RcodeBadVers}

// Metrics holds the resolver's Prometheus metrics, with every child the
// answer path touches resolved in advance: counting a query is an atomic add.
type Metrics struct {
	queries   [protoCount][]prometheus.Counter // by qtype index, last = other
	responses [protoCount][]prometheus.Counter // by rcode index, last = other
	duration  [protoCount]prometheus.Observer
	truncated prometheus.Counter
	dropped   prometheus.Counter
	answers   *prometheus.CounterVec
	placed    [3]prometheus.Counter // by placement.Rule
}

// NewMetrics creates the resolver's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	q := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_dns_queries_total",
		Help: "DNS queries received, by query type and transport."}, []string{"qtype", "proto"})
	r := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_dns_responses_total",
		Help: "DNS responses sent, by response code and transport."}, []string{"rcode", "proto"})
	d := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meridian_dns_response_duration_seconds",
		Help:    "Time from reading a query to writing its response.",
		Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2}}, []string{"proto"})
	m := &Metrics{
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_dns_truncated_responses_total",
			Help: "UDP responses sent with TC set because the answer did not fit."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_dns_dropped_packets_total",
			Help: "Packets dropped unanswered: malformed beyond a header, or not a query."}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_dns_answers_total",
			Help: "Endpoints given in answers, by service, endpoint and the client's region (\"any\" for policies that do not place clients)."},
			[]string{"service", "endpoint", "region"}),
	}
	pv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_dns_placements_total",
		Help: "Clients placed in a region for the latency policy, by the rule that placed them (network, geoip, node)."}, []string{"rule"})
	for r := range m.placed {
		m.placed[r] = pv.WithLabelValues(placement.Rule(r).String())
	}
	for p, proto := range protoNames {
		for _, t := range metricQtypes {
			m.queries[p] = append(m.queries[p], q.WithLabelValues(dns.TypeToString[t], proto))
		}
		m.queries[p] = append(m.queries[p], q.WithLabelValues("other", proto))
		for _, c := range metricRcodes {
			m.responses[p] = append(m.responses[p], r.WithLabelValues(dns.RcodeToString[c], proto))
		}
		m.responses[p] = append(m.responses[p], r.WithLabelValues("other", proto))
		m.duration[p] = d.WithLabelValues(proto)
	}
	if reg != nil {
		reg.MustRegister(q, r, d, pv, m.truncated, m.dropped, m.answers)
	}
	return m
}

// answerCounter resolves the answers counter of one endpoint for clients
// of one region (compile time only).
func (m *Metrics) answerCounter(service, endpoint, region string) prometheus.Counter {
	return m.answers.WithLabelValues(service, endpoint, region)
}

func (m *Metrics) query(proto int, qtype uint16) {
	for i, t := range metricQtypes {
		if t == qtype {
			m.queries[proto][i].Inc()
			return
		}
	}
	m.queries[proto][len(metricQtypes)].Inc()
}

func (m *Metrics) response(proto, rcode int) {
	for i, c := range metricRcodes {
		if c == rcode {
			m.responses[proto][i].Inc()
			return
		}
	}
	m.responses[proto][len(metricRcodes)].Inc()
}
