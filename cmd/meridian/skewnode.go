package main

// Client-skew recording, wired into a node (SKEW.md, issue 6).
//
//	resolver ─RecordAnswer─▶ skewBinding ─▶ skew.Recorder ◀─RecordHealth─ publishHealth / reload
//	                                          │      ▲
//	                       Export every interval│      │ DecodeExport (Accept)
//	                                          ▼      │
//	                                   gossip Exchange ◀──▶ peers
//	                                          │
//	   Report (own state + peers' latest exports) ─▶ /api/v1/skew, meridian_skew_* gauges
//
// The recorder's indexes stay valid across reloads: skewindex.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
	"meridian/gossip"
	"meridian/health"
	"meridian/resolver"
	"meridian/skew"
	"meridian/ui"
)

// Skew report timing.
const (
	// skewGaugeWindow is the window of the reports behind the gauges.
	skewGaugeWindow = 5 * time.Minute
	// skewRefresh is how often the gauges' reports are rebuilt. Building
	// them also keeps the recorder's long-term profiles and its adoption
	// of the peers' identities going, which need a report at least hourly.
	skewRefresh = 30 * time.Second
	// skewPeerForget is how long a peer's export is kept after the peer
	// left the cluster, or after it last sent one: by then every window
	// it holds has left the hour the reports cover.
	skewPeerForget = time.Hour
	// skewMaxPeers bounds the peers whose exports are kept.
	skewMaxPeers = 64
)

// skewNode is a node's client-skew recording: the recorder, the resolver's
// view of it across reloads, the health timeline, the peers' exports and
// the reports built from them. A nil *skewNode is recording turned off
// (skew.enabled = false): its methods then do nothing, or what the node
// did without it.
type skewNode struct {
	log   *slog.Logger
	node  string // this node's name, fixed at start (node.name is restart-only)
	rec   *skew.Recorder
	peers *skewPeers

	mu     sync.Mutex     // serializes reloads and health events; guards the fields below
	cfg    *config.Config // the configuration the resolver answers from
	reg    *skewRegistry  // what the recorder records in (skewindex.go)
	bind   *skewBinding   // the resolver's recorder for cfg
	health map[skewEndpointKey]skewHealthState
	epoch  atomic.Uint64 // the registry's compactions (skewBinding reads it)
	lost   atomic.Uint64 // answers of a table whose indexes a compaction retired

	reportMu sync.Mutex // serializes reports, so they are built in time order
	gauges   atomic.Pointer[[]skewServiceGauges]
	gaugeMu  sync.Mutex // one gauge refresh at a time
}

// skewEndpointKey names an endpoint across configurations.
type skewEndpointKey struct{ service, endpoint string }

// skewHealthState is what the recorder last heard about an endpoint.
type skewHealthState struct {
	up     bool
	weight float64
}

// newSkewNode builds the recorder for cfg (nil when skew.enabled is false)
// and registers its metrics; it starts nothing. members lists the live
// cluster members (nil without gossip).
func newSkewNode(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, members func() []health.Member) (*skewNode, error) {
	if !cfg.Skew.Recording() {
		return nil, nil
	}
	s := &skewNode{log: log, node: cfg.Node.Name, health: map[skewEndpointKey]skewHealthState{}, cfg: cfg}
	s.reg = newSkewRegistry(cfg)
	var err error
	if s.rec, err = skew.New(s.config(s.reg, cfg)); err != nil {
		return nil, err
	}
	s.bind = newSkewBinding(s.rec, s.reg, cfg, 0, &s.epoch, &s.lost)
	s.peers = &skewPeers{rec: s.rec, log: log, members: members, peers: map[string]*skewPeer{}}
	if reg != nil {
		s.peers.rejected = prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_skew_peer_exports_rejected_total",
			Help: "Skew exports received from peers that did not decode or did not come from the node they name."})
		reg.MustRegister(s.peers.rejected, (*skewCollector)(s),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meridian_skew_reload_lost_answers_total",
				Help: "Answers not recorded because a reload reset the recorder's registry of services and endpoints while their table was still answering."},
				func() float64 { return float64(s.lost.Load()) }))
	}
	return s, nil
}

// config is the recorder's configuration: the registry's services, and
// cfg's top_k.
func (s *skewNode) config(reg *skewRegistry, cfg *config.Config) skew.Config {
	sc := reg.config(s.node, cfg.Skew.TopK)
	sc.Logger = s.log
	return sc
}

// recorder is what the resolver starts with (nil when recording is off).
func (s *skewNode) recorder() resolver.AnswerRecorder {
	if s == nil {
		return nil
	}
	return s.bind
}

// exchange is what gossip sends to and receives from peers (nil when
// recording is off).
func (s *skewNode) exchange() gossip.Exchange {
	if s == nil {
		return nil
	}
	return s.peers
}

// update makes cfg the configuration the resolver answers from, extends
// the recorder's registry with it (skewindex.go) and records the health of
// every endpoint that changed under snap. The recorder goes first, so the
// new table's answers find their entries; a failure leaves both with the
// configuration they had. Called with the configuration the node started
// with, it only recompiles the resolver's table.
func (s *skewNode) update(dnsSrv *resolver.Server, cfg *config.Config, snap *health.Snapshot) error {
	if s == nil {
		return dnsSrv.Update(cfg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg == s.cfg {
		if err := dnsSrv.UpdateWithRecorder(cfg, s.bind); err != nil {
			return err
		}
		s.recordHealthLocked(snap)
		return nil
	}
	reg, compacted := s.reg.with(cfg)
	sc := s.config(reg, cfg)
	// Check the recorder's configuration before anything changes: New
	// with a small top-k checks everything Update does (top_k is
	// validated by config).
	check := sc
	check.TopK = 16
	if _, err := skew.New(check); err != nil {
		return err
	}
	if err := s.rec.Update(sc); err != nil {
		return err
	}
	epoch := s.epoch.Load()
	if compacted {
		epoch++
		s.epoch.Store(epoch)
		s.log.Warn("skew: the recorder's registry of services and endpoints reached its limits and was reset to the configuration; the history of removed ones is gone")
	}
	next := newSkewBinding(s.rec, reg, cfg, epoch, &s.epoch, &s.lost)
	if err := dnsSrv.UpdateWithRecorder(cfg, next); err != nil {
		// The old table keeps answering: put the recorder back. The old
		// registry is a prefix of the new one unless it was compacted.
		if rerr := s.rec.Update(s.config(s.reg, s.cfg)); rerr != nil {
			s.log.Error("skew: the recorder could not return to the running configuration", "err", rerr)
		} else if compacted {
			s.epoch.Store(epoch - 1)
		}
		return err
	}
	s.cfg, s.reg, s.bind = cfg, reg, next
	s.recordHealthLocked(snap)
	return nil
}

// healthChanged records every endpoint whose answerability or weight
// differs under snap (the health the resolver now serves) from what the
// recorder last heard.
func (s *skewNode) healthChanged(snap *health.Snapshot) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordHealthLocked(snap)
}

// recordHealthLocked records the endpoints of the running configuration
// whose state under snap is new or changed, and as drained (down, weight
// 0) those a reload removed; s.mu is held. A snapshot that does not know an
// endpoint (built before a reload added it) answers it, as the resolver
// does. Fail-open is the report's to apply.
func (s *skewNode) recordHealthLocked(snap *health.Snapshot) {
	now := time.Now().UnixNano()
	seen := make(map[skewEndpointKey]skewHealthState, len(s.health))
	for _, svc := range s.cfg.Services {
		for _, e := range svc.Endpoints {
			k := skewEndpointKey{svc.Name, e.Name}
			st := skewHealthState{up: snap == nil || snap.Up(svc.Name, e.Name), weight: float64(e.EffectiveWeight())}
			seen[k] = st
			if last, ok := s.health[k]; !ok || last != st {
				i, j := s.reg.endpoint(svc.Name, e.Name)
				s.rec.RecordHealth(now, i, j, st.up, st.weight)
			}
		}
	}
	for k := range s.health {
		if _, ok := seen[k]; !ok {
			if i, j, ok := s.reg.lookup(k.service, k.endpoint); ok {
				s.rec.RecordHealth(now, i, j, false, 0)
			}
		}
	}
	s.health = seen
}

// Run drains the recorder and refreshes the gauges' reports until ctx ends.
func (s *skewNode) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.rec.Run(ctx) }()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case <-t.C:
			s.refreshGauges()
			t.Reset(skewRefresh)
		}
	}
}

// services returns the names of the services the node answers now.
func (s *skewNode) services() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ui.ServiceNames(s.cfg)
}

// report builds the cluster-wide report of service over window from this
// node's state and its peers' latest exports. Reports are built one at a
// time, in time order (the recorder folds its long-term profiles as they
// go by). Endpoints a reload removed are left out once they have no
// answers in the window.
func (s *skewNode) report(service string, window time.Duration) (*skew.Report, error) {
	s.mu.Lock()
	current := map[string]bool{}
	for _, svc := range s.cfg.Services {
		if svc.Name == service {
			for _, e := range svc.Endpoints {
				current[e.Name] = true
			}
		}
	}
	s.mu.Unlock()
	s.reportMu.Lock()
	now := time.Now()
	rep, err := s.rec.Report(service, window, now.UnixNano(), s.peers.list(now))
	s.reportMu.Unlock()
	if err != nil {
		return nil, err
	}
	regions := map[string]bool{}
	rep.Endpoints = slices.DeleteFunc(rep.Endpoints, func(e skew.EndpointShare) bool {
		keep := current[e.Name] || e.Answers > 0
		regions[e.Region] = regions[e.Region] || keep
		return !keep
	})
	rep.Regions = slices.DeleteFunc(rep.Regions, func(r skew.RegionShare) bool { return !regions[r.Name] })
	return rep, nil
}

// skewPeers is the gossip Exchange of skew state: it sends this node's
// export and keeps the newest valid export of each peer, forgetting peers
// that left the cluster (or fell silent) an hour ago, and never more than
// skewMaxPeers. A bad export is counted and logged once per peer, and
// never replaces a good one.
type skewPeers struct {
	rec      *skew.Recorder
	log      *slog.Logger
	members  func() []health.Member // live members; nil: no cluster
	rejected prometheus.Counter     // nil: not counted

	mu    sync.Mutex
	peers map[string]*skewPeer
}

// skewPeer is what this node holds of one peer.
type skewPeer struct {
	x         *skew.Export // newest valid export; nil until one arrives
	got       time.Time    // when x (or, with none, the first bad one) arrived
	goneSince time.Time    // when the peer was first seen missing from the members; zero while it is one
	warned    bool         // a bad export of this peer was logged
}

// Export implements gossip's Exchange: this node's recorded state.
func (p *skewPeers) Export(now time.Time) ([]byte, error) {
	return p.rec.Export(now.UnixNano())
}

// Accept implements gossip's Exchange: it decodes a peer's export and keeps
// it when it is the newest from that node.
func (p *skewPeers) Accept(from string, b []byte) {
	x, err := skew.DecodeExport(b)
	if err == nil && x.Node != from {
		err = fmt.Errorf("skew: export of node %q sent by %q", x.Node, from)
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneLocked(now)
	peer := p.peers[from]
	if peer == nil {
		if len(p.peers) >= skewMaxPeers {
			p.evictOldestLocked()
		}
		peer = &skewPeer{got: now}
		p.peers[from] = peer
	}
	if err != nil {
		if p.rejected != nil {
			p.rejected.Inc()
		}
		if !peer.warned {
			peer.warned = true
			p.log.Warn("skew export from a peer rejected; later ones that fail are only counted",
				"peer", from, "bytes", len(b), "err", err)
		}
		return
	}
	if peer.x != nil && x.At < peer.x.At {
		return
	}
	peer.x, peer.got, peer.warned = x, now, false
}

// list returns the peers' newest exports, by node name.
func (p *skewPeers) list(now time.Time) []*skew.Export {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneLocked(now)
	names := make([]string, 0, len(p.peers))
	for name, peer := range p.peers {
		if peer.x != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]*skew.Export, len(names))
	for i, name := range names {
		out[i] = p.peers[name].x
	}
	return out
}

// pruneLocked forgets the peers that left the cluster, or sent nothing
// new, more than skewPeerForget ago.
func (p *skewPeers) pruneLocked(now time.Time) {
	alive := map[string]bool{}
	if p.members != nil {
		for _, m := range p.members() {
			alive[m.Name] = m.Alive
		}
	}
	for name, peer := range p.peers {
		switch {
		case alive[name]:
			peer.goneSince = time.Time{}
		case peer.goneSince.IsZero():
			peer.goneSince = now
		}
		if now.Sub(peer.got) > skewPeerForget || !peer.goneSince.IsZero() && now.Sub(peer.goneSince) > skewPeerForget {
			delete(p.peers, name)
		}
	}
}

// evictOldestLocked forgets the peer heard from longest ago.
func (p *skewPeers) evictOldestLocked() {
	var oldest string
	for name, peer := range p.peers {
		if oldest == "" || peer.got.Before(p.peers[oldest].got) {
			oldest = name
		}
	}
	delete(p.peers, oldest)
}

// skewHandler serves GET /api/v1/skew?service=NAME&window=5m|1h: the merged
// report of one service as JSON, or without service a JSON array of the
// report of every service with answers in the window. 400 for a bad window;
// 404 for an unknown service, for a service without answers in the window
// yet, and when recording is off.
func (s *skewNode) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s == nil {
			http.Error(w, "skew: recording is off on this node (skew.enabled = false)", http.StatusNotFound)
			return
		}
		q := r.URL.Query()
		window, err := parseSkewWindow(q.Get("window"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !q.Has("service") {
			reports := []*skew.Report{}
			for _, name := range s.services() {
				rep, err := s.report(name, window)
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				if rep.Answers > 0 {
					reports = append(reports, rep)
				}
			}
			writeSkewJSON(w, reports)
			return
		}
		name := canonicalService(q.Get("service"))
		have := s.services()
		if !slices.Contains(have, name) {
			http.Error(w, fmt.Sprintf("skew: no service %q (have %s)", q.Get("service"), strings.Join(have, ", ")), http.StatusNotFound)
			return
		}
		rep, err := s.report(name, window)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if rep.Answers == 0 {
			http.Error(w, fmt.Sprintf("skew: no answers recorded for %s in the last %s yet", name, rep.Window), http.StatusNotFound)
			return
		}
		writeSkewJSON(w, rep)
	})
}

// parseSkewWindow reads the window parameter: a multiple of the recorder's
// 5-minute window up to an hour; empty means 5m.
func parseSkewWindow(v string) (time.Duration, error) {
	if v == "" {
		return skew.DefaultWindow, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < skew.DefaultWindow || d > time.Hour || d%skew.DefaultWindow != 0 {
		return 0, fmt.Errorf("skew: window %q: give a multiple of 5m up to 1h, such as 5m or 1h", v)
	}
	return d, nil
}

// canonicalService writes a service name as the configuration does: lower
// case, fully qualified.
func canonicalService(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

func writeSkewJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// skewServiceGauges is one service's gauges, from its latest 5-minute report.
type skewServiceGauges struct {
	service   string
	hasData   bool // answers in the window: without, only intended shares are known
	tvd, neff float64
	endpoints []skewEndpointGauges
}

type skewEndpointGauges struct {
	name                string
	estimated, intended float64
	alarms              []bool // by skew.AlarmKinds()
}

// refreshGauges rebuilds every service's 5-minute report for the gauges.
func (s *skewNode) refreshGauges() {
	s.gaugeMu.Lock()
	defer s.gaugeMu.Unlock()
	kinds := skew.AlarmKinds()
	var out []skewServiceGauges
	for _, name := range s.services() {
		rep, err := s.report(name, skewGaugeWindow)
		if err != nil {
			s.log.Warn("skew report for the gauges failed", "service", name, "err", err)
			continue
		}
		g := skewServiceGauges{service: name, hasData: rep.Answers > 0, tvd: rep.TVD, neff: rep.Concentration.NEff}
		for _, e := range rep.Endpoints {
			eg := skewEndpointGauges{name: e.Name, estimated: e.Estimated, intended: e.Intended, alarms: make([]bool, len(kinds))}
			for k, kind := range kinds {
				eg.alarms[k] = g.hasData && rep.Alarm(kind, e.Name)
			}
			g.endpoints = append(g.endpoints, eg)
		}
		out = append(out, g)
	}
	s.gauges.Store(&out)
}

// skewCollector exports the gauges of the latest refresh (a scrape never
// builds reports, except the first before any refresh).
type skewCollector skewNode

var (
	skewEstimatedDesc = prometheus.NewDesc("meridian_skew_estimated_share",
		"Demand-weighted share of the service's client traffic the endpoint carries (5-minute skew report; NaN until the service has answers in the window).",
		[]string{"service", "endpoint"}, nil)
	skewIntendedDesc = prometheus.NewDesc("meridian_skew_intended_share",
		"Share of the service's traffic the endpoint should carry: time-averaged weights (capacities for latency) of the answerable endpoints (5-minute skew report).",
		[]string{"service", "endpoint"}, nil)
	skewTVDDesc = prometheus.NewDesc("meridian_skew_tvd",
		"Skew index: total variation distance between estimated and intended shares, the fraction of traffic that would have to move (5-minute report; NaN without answers).",
		[]string{"service"}, nil)
	skewNEffDesc = prometheus.NewDesc("meridian_skew_effective_resolvers",
		"Effective number of resolver caches carrying the service's demand, 1/HHI (5-minute skew report).",
		[]string{"service"}, nil)
	skewAlarmDesc = prometheus.NewDesc("meridian_skew_alarm",
		"1 while the 5-minute skew report raises the alarm for the endpoint, else 0.",
		[]string{"service", "endpoint", "alarm"}, nil)
)

// Describe implements prometheus.Collector.
func (c *skewCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{skewEstimatedDesc, skewIntendedDesc, skewTVDDesc, skewNEffDesc, skewAlarmDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *skewCollector) Collect(ch chan<- prometheus.Metric) {
	s := (*skewNode)(c)
	if s.gauges.Load() == nil {
		s.refreshGauges()
	}
	kinds := skew.AlarmKinds()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, g := range *s.gauges.Load() {
		tvd := math.NaN()
		if g.hasData {
			tvd = g.tvd
		}
		gauge(skewTVDDesc, tvd, g.service)
		gauge(skewNEffDesc, g.neff, g.service)
		for _, e := range g.endpoints {
			est := math.NaN()
			if g.hasData {
				est = e.estimated
			}
			gauge(skewEstimatedDesc, est, g.service, e.name)
			gauge(skewIntendedDesc, e.intended, g.service, e.name)
			for k, kind := range kinds {
				v := 0.0
				if e.alarms[k] {
					v = 1
				}
				gauge(skewAlarmDesc, v, g.service, e.name, kind)
			}
		}
	}
}
