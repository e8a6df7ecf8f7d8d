package gossip

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Node's Prometheus collectors. Labels come only from closed
// sets (the message type: view, full_view); never node names.
type metrics struct {
	received, receivedBytes [2]prometheus.Counter // by message type: [0] view, [1] full_view
	sent, sentBytes         [2]prometheus.Counter
	decodeErrors            prometheus.Counter
	relayed                 prometheus.Counter
	joinAttempts            prometheus.Counter
	collectors              []prometheus.Collector
}

// newMetrics builds the collectors; members and queued are read at scrape
// time. It registers them with reg unless reg is nil.
func newMetrics(reg prometheus.Registerer, members, queued func() float64) (*metrics, error) {
	const ns, sub = "meridian", "gossip"
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{"type"})
	}
	received := vec("messages_received_total", "Gossip messages received, by type (view: a broadcast change, full_view: push/pull).")
	receivedBytes := vec("received_bytes_total", "Bytes of gossip messages received, by type.")
	sent := vec("messages_sent_total", "Gossip messages sent, by type (view: a broadcast change, full_view: push/pull).")
	sentBytes := vec("sent_bytes_total", "Bytes of gossip messages sent, by type.")
	m := &metrics{
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "decode_errors_total", Help: "Gossip messages dropped because they could not be decoded."}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "relayed_total", Help: "Peers' observation changes this node heard first and broadcast on."}),
		joinAttempts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "join_attempts_total", Help: "Attempts to join the cluster through the configured join addresses."}),
	}
	for i, full := range []bool{false, true} {
		t := messageType(full)
		m.received[i], m.receivedBytes[i] = received.WithLabelValues(t), receivedBytes.WithLabelValues(t)
		m.sent[i], m.sentBytes[i] = sent.WithLabelValues(t), sentBytes.WithLabelValues(t)
	}
	m.collectors = []prometheus.Collector{
		received, receivedBytes, sent, sentBytes, m.decodeErrors, m.relayed, m.joinAttempts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "members",
			Help: "Cluster members memberlist sees alive, this node included (0 while gossip is not running)."}, members),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "broadcasts_queued",
			Help: "Observation changes queued for broadcast."}, queued),
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, r := range m.collectors[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("gossip: register metrics: %w", err)
		}
	}
	return m, nil
}

// index maps a message type to its counters.
func index(full bool) int {
	if full {
		return 1
	}
	return 0
}

func (m *metrics) countReceived(full bool, n int) {
	m.received[index(full)].Inc()
	m.receivedBytes[index(full)].Add(float64(n))
}

func (m *metrics) countSent(full bool, n int) {
	m.sent[index(full)].Inc()
	m.sentBytes[index(full)].Add(float64(n))
}
