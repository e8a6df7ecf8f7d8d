package gossip

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"meridian/health"
)

// metrics are a Node's Prometheus collectors. Labels come only from closed
// sets (the message type: view, full_view, exchange, heartbeat; why an
// exchange was dropped); never node names.
type metrics struct {
	received, receivedBytes [kindCount]prometheus.Counter // by message kind
	sent, sentBytes         [kindCount]prometheus.Counter
	decodeErrors            prometheus.Counter
	relayed                 prometheus.Counter
	joinAttempts            prometheus.Counter
	exchangeDropped         [dropCount]prometheus.Counter // by dropReason
	collectors              []prometheus.Collector
}

// Message kinds, as metric label values and array indexes.
const (
	kindView      = iota // a broadcast change
	kindFullView         // push/pull, or the view sent to a joining peer
	kindExchange         // an Exchange export
	kindHeartbeat        // a view with no observations, sent every stale_after/3
	kindCount
)

var kindNames = [kindCount]string{"view", "full_view", "exchange", "heartbeat"}

// Why an exchange message was dropped: the closed set of the reason label.
const (
	dropOversizeSent     = iota // this node's export is over the size bound: not sent
	dropOversizeReceived        // a peer's is: not accepted
	dropStale                   // not newer than the peer's last one accepted
	dropExportFailed            // Export returned an error: nothing to send this round
	dropSendFailed              // the stream to a peer failed
	dropCount
)

var dropNames = [dropCount]string{"oversize_sent", "oversize_received", "stale", "export_failed", "send_failed"}

// newMetrics builds the collectors; members and queued are read at scrape
// time. It registers them with reg unless reg is nil.
func newMetrics(reg prometheus.Registerer, members, queued func() float64) (*metrics, error) {
	const ns, sub = "meridian", "gossip"
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{"type"})
	}
	received := vec("messages_received_total", "Gossip messages received, by type (view: a broadcast change, full_view: push/pull, exchange: a peer's exchanged state, heartbeat: a peer's periodic empty view).")
	receivedBytes := vec("received_bytes_total", "Bytes of gossip messages received, by type.")
	sent := vec("messages_sent_total", "Gossip messages sent, by type (view: a broadcast change, full_view: push/pull, exchange: this node's exchanged state, once per peer, heartbeat: this node's periodic empty view, once per peer).")
	sentBytes := vec("sent_bytes_total", "Bytes of gossip messages sent, by type.")
	m := &metrics{
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "decode_errors_total", Help: "Gossip messages dropped because they could not be decoded."}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "relayed_total", Help: "Peers' observation changes this node heard first and broadcast on."}),
		joinAttempts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "join_attempts_total", Help: "Attempts to join the cluster through the configured join addresses."}),
	}
	for i, t := range kindNames {
		m.received[i], m.receivedBytes[i] = received.WithLabelValues(t), receivedBytes.WithLabelValues(t)
		m.sent[i], m.sentBytes[i] = sent.WithLabelValues(t), sentBytes.WithLabelValues(t)
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "exchange_dropped_total",
		Help: "Exchange messages dropped, by reason: oversize_sent and oversize_received (over the 16 MiB bound), stale (not newer than the peer's last), export_failed, send_failed."},
		[]string{"reason"})
	for i, r := range dropNames {
		m.exchangeDropped[i] = dropped.WithLabelValues(r)
	}
	m.collectors = []prometheus.Collector{
		received, receivedBytes, sent, sentBytes, m.decodeErrors, m.relayed, m.joinAttempts, dropped,
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

// viewKind is the kind of a view message.
func viewKind(v health.View) int {
	switch {
	case v.Full:
		return kindFullView
	case len(v.Obs) == 0:
		return kindHeartbeat
	}
	return kindView
}

func (m *metrics) countReceived(kind, n int) {
	m.received[kind].Inc()
	m.receivedBytes[kind].Add(float64(n))
}

func (m *metrics) countSent(kind, n int) {
	m.sent[kind].Inc()
	m.sentBytes[kind].Add(float64(n))
}
