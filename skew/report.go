package skew

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"
)

// Report is the cluster-wide skew report of one service over one window.
// It is served as JSON by GET /api/v1/skew and drawn by /ui.
type Report struct {
	Service       string           `json:"service"`
	Policy        string           `json:"policy"`
	Window        string           `json:"window"`
	From          time.Time        `json:"from"`
	To            time.Time        `json:"to"`
	Nodes         []string         `json:"nodes"`
	Windows       []WindowNodes    `json:"windows"` // the windows with answers, and who recorded them
	Endpoints     []EndpointShare  `json:"endpoints"`
	Regions       []RegionShare    `json:"regions"`
	TVD           float64          `json:"tvd"`
	Unattrib      float64          `json:"unattributable"` // U: share of demand not measured to ±25 % (see doc.go)
	AnsweredLabel string           `json:"answered_label"`
	Answers       uint64           `json:"answers"`
	Concentration Concentration    `json:"concentration"`
	TTL           TTLBehaviour     `json:"ttl"`
	Top           []Contributor    `json:"top_contributors"`
	Alarms        []Alarm          `json:"alarms"`
	Confidence    Confidence       `json:"confidence"`
	Unverified    uint64           `json:"unverified_answers"`
	Recording     RecordingHealth  `json:"recording"`
	Identities    int              `json:"identities"`
	perWindow     []windowEstimate // the last three windows, newest last
}

// WindowNodes says which nodes contributed to one tumbling window.
type WindowNodes struct {
	Start time.Time `json:"start"`
	Nodes []string  `json:"nodes"`
}

// EndpointShare is one endpoint's line of the report. Shares are fractions
// of the service's traffic (0..1).
type EndpointShare struct {
	Name       string  `json:"name"`
	Region     string  `json:"region"`
	Intended   float64 `json:"intended"`  // π̄: time-averaged target share
	Answered   float64 `json:"answered"`  // A: share of answers (decisions, not traffic)
	Occupancy  float64 `json:"occupancy"` // O: share of cache occupancy
	Estimated  float64 `json:"estimated"` // Ŝ: demand-weighted share
	Lo         float64 `json:"lo"`        // bracket around Ŝ
	Hi         float64 `json:"hi"`
	Rho        float64 `json:"rho"` // Ŝ/π̄ (0 when π̄ is 0)
	Z          float64 `json:"z"`   // (Ŝ−π̄)/σ
	Answers    uint64  `json:"answers"`
	NEff       float64 `json:"n_eff"`      // effective number of identities carrying it
	Identities float64 `json:"identities"` // distinct identities answered it (HyperLogLog)
	Subnets    float64 `json:"ecs_subnets"`
	Up         bool    `json:"up"` // answerable at the end of the window
}

// RegionShare sums the endpoints of one region.
type RegionShare struct {
	Name      string  `json:"name"`
	Intended  float64 `json:"intended"`
	Answered  float64 `json:"answered"`
	Estimated float64 `json:"estimated"`
	Lo        float64 `json:"lo"`
	Hi        float64 `json:"hi"`
}

// Concentration describes how few caches carry the demand.
type Concentration struct {
	Top1  float64 `json:"top1"`
	Top5  float64 `json:"top5"`
	Top20 float64 `json:"top20"`
	HHI   float64 `json:"hhi"`
	NEff  float64 `json:"n_eff"`
}

// TTLBehaviour summarises how caches treat the TTL.
type TTLBehaviour struct {
	Clamped      int          `json:"clamped_identities"`
	ClampedShare float64      `json:"clamped_share"`
	Prefetching  int          `json:"prefetching"`
	Pooled       int          `json:"pooled"`
	Saturated    int          `json:"saturated"`
	Clamps       []ClampFloor `json:"clamps"`
	// Drain: how long after DrainEndpoint left the answers (at DrainAt) the
	// demand still pointing at it fell below 5 % and 1 % of what it was.
	DrainEndpoint string     `json:"drain_endpoint,omitempty"`
	DrainAt       *time.Time `json:"drain_at,omitempty"`
	Drain5        float64    `json:"drain_5pct_s"`
	Drain1        float64    `json:"drain_1pct_s"`
	DrainDone     bool       `json:"drain_complete"`
}

// ClampFloor is one observed refresh floor of clamping caches.
type ClampFloor struct {
	FloorS     float64 `json:"floor_s"`
	Identities int     `json:"identities"`
	Share      float64 `json:"share"`
}

// Contributor is one identity's part in the gap between estimated and
// intended shares: share·(its split to the endpoint − intended).
type Contributor struct {
	Identity     string  `json:"identity"`
	Share        float64 `json:"share"`
	Endpoint     string  `json:"endpoint"`
	Contribution float64 `json:"contribution"`
	Class        string  `json:"class"`
	Demand       float64 `json:"demand_per_s"`
}

// Alarm kinds.
const (
	AlarmActivePassive            = "ACTIVE_PASSIVE"
	AlarmEffectivelyActivePassive = "EFFECTIVELY_ACTIVE_PASSIVE"
	AlarmHot                      = "HOT"
	AlarmConcentrated             = "CONCENTRATED"
)

// AlarmKinds is the closed set of alarm kinds (a metric label set).
func AlarmKinds() []string {
	return []string{AlarmActivePassive, AlarmEffectivelyActivePassive, AlarmHot, AlarmConcentrated}
}

// Alarm is one raised alarm.
type Alarm struct {
	Kind     string `json:"kind"`
	Endpoint string `json:"endpoint"`
	Detail   string `json:"detail"`
}

// Confidence grades the report and says why.
type Confidence struct {
	Grade   string   `json:"grade"` // High | Medium | Low
	Reasons []string `json:"reasons"`
}

// RecordingHealth reports what recording lost in the report's windows.
type RecordingHealth struct {
	Dropped       uint64   `json:"dropped"`        // hand-off overflow (node counters)
	Late          uint64   `json:"late"`           // answers older than the ring
	EventsDropped uint64   `json:"events_dropped"` // answers of held identities not logged
	Evictions     uint64   `json:"evictions"`
	Admissions    uint64   `json:"admissions"`
	Truncated     []string `json:"truncated_exports,omitempty"`
}

// Alarm reports whether an alarm of kind is raised for endpoint.
func (rep *Report) Alarm(kind, endpoint string) bool {
	for _, a := range rep.Alarms {
		if a.Kind == kind && a.Endpoint == endpoint {
			return true
		}
	}
	return false
}

// Report builds the cluster-wide report for one service over the window
// ending at now, from this node's state and its peers' latest exports (nil
// entries, this node's own name and all but the newest export of a node
// are ignored). window is a multiple of the tumbling window up to twelve of
// them (5m and 1h with the default); the report covers the fewest whole
// windows that hold [now−window, now), the open one included. Building a
// report also adopts into this node's top-k the identities the peers hold
// (so every node logs the same caches) and folds the window about to leave
// the ring into the long-term profiles; call it in time order.
func (r *Recorder) Report(service string, window time.Duration, now int64, peers []*Export) (*Report, error) {
	c := r.cfg.Load()
	si, ok := c.byName[service]
	if !ok {
		return nil, fmt.Errorf("skew: report: no service %q", service)
	}
	if window < time.Duration(c.window) || window > time.Duration(c.window)*(ringWindows-1) || window%time.Duration(c.window) != 0 {
		return nil, fmt.Errorf("skew: report %s: window %s is not a multiple of %s up to %s",
			service, window, time.Duration(c.window), time.Duration(c.window)*(ringWindows-1))
	}
	exports := r.exports(now, service, peers)
	r.adopt(si, service, exports[1:])
	return buildReport(c.cfg.Services[si], exports, int64(window), now, c.window, r.prof)
}

// adopt admits to this node's top-k the identities of service that its
// peers hold (those with sequences in their exports). A resolver spreads
// its queries over every name server, so every node must log the same
// identities or the merged sequences have holes; a node's own doorkeeper
// may take long to admit a cache that reaches it once every half hour.
// Peers admitted these through their own doorkeepers, so spoofed sources
// do not get in this way either. The next answer an adopted identity gets
// here opens its log (Event.First).
func (r *Recorder) adopt(si int, service string, peers []*Export) {
	var keys []uint64
	for _, x := range peers {
		i := slices.IndexFunc(x.Services, func(s Service) bool { return s.Name == service })
		if i < 0 {
			continue
		}
		for _, w := range x.Windows {
			for _, seq := range w.Services[i].Sequences {
				keys = append(keys, seq.key)
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cfg.Load()
	if si >= len(c.cfg.Services) || c.cfg.Services[si].Name != service {
		return // reloaded meanwhile
	}
	for _, k := range keys {
		if r.st.top.find(k) < 0 {
			r.st.top.admit(k, int32(si), float64(c.cfg.Services[si].TTL))
			r.st.top.e[r.st.top.find(k)].fresh = true
		}
	}
}

// exports returns this node's snapshot of service followed by the newest
// export of each other node among peers.
func (r *Recorder) exports(now int64, service string, peers []*Export) []*Export {
	own := r.snapshot(now, service)
	exports := []*Export{own}
	newest := map[string]int{}
	for _, p := range peers {
		if p == nil || p.Node == own.Node {
			continue
		}
		if i, seen := newest[p.Node]; seen {
			if p.At > exports[i].At {
				exports[i] = p
			}
			continue
		}
		newest[p.Node] = len(exports)
		exports = append(exports, p)
	}
	return exports
}

// IdentityEstimate is what the report infers about one cache identity from
// its answers over the last hour.
type IdentityEstimate struct {
	Identity  string       `json:"identity"`
	Source    netip.Addr   `json:"source"`
	ECS       netip.Prefix `json:"ecs"`
	Class     string       `json:"class"` // honour | prefetch | clamped | pooled | saturated | few-gaps
	Answers   int          `json:"answers"`
	Gaps      int          `json:"gaps"`       // gaps ≥ 0.5τ
	ShortGaps int          `json:"short_gaps"` // gaps < 0.5τ
	TTL       float64      `json:"ttl_s"`      // TTL sent (median)
	FloorS    float64      `json:"floor_s"`    // 2nd-smallest gap ≥ 0.5τ
	PValue    float64      `json:"p_honour"`   // of the honour hypothesis (clamp test)
	Demand    float64      `json:"demand_per_s"`
	DemandLo  float64      `json:"demand_lo"`
	DemandHi  float64      `json:"demand_hi"`
	Bounded   bool         `json:"bounded"` // demand only known within [lo, hi]
}

// Identities returns the per-identity analysis behind a report of service
// at now: every identity with logged answers in the last hour, on this node
// or the peers.
func (r *Recorder) Identities(service string, now int64, peers []*Export) ([]IdentityEstimate, error) {
	c := r.cfg.Load()
	si, ok := c.byName[service]
	if !ok {
		return nil, fmt.Errorf("skew: identities: no service %q", service)
	}
	m := mergeExports(c.cfg.Services[si], c.window, now, r.exports(now, service, peers))
	out := make([]IdentityEstimate, 0, len(m.ids))
	for _, id := range m.ids {
		id.pro = r.prof.get(id.key)
		id.analyze(now)
		out = append(out, IdentityEstimate{
			Identity: identityString(id.src, id.ecs), Source: id.src, ECS: id.ecs, Class: id.class,
			Answers: len(id.ev), Gaps: int(math.Round(id.nLong)), ShortGaps: int(math.Round(id.nShort)), TTL: id.tau, FloorS: id.floor,
			PValue: id.pValue, Demand: id.lam, DemandLo: id.lamLo, DemandHi: id.lamHi, Bounded: id.bounded,
		})
	}
	return out, nil
}

func buildReport(svc Service, exports []*Export, window, now, tumbling int64, prof *profiles) (*Report, error) {
	m := mergeExports(svc, tumbling, now, exports)
	for _, id := range m.ids {
		id.pro = prof.get(id.key)
		id.analyze(now)
	}
	// Fold the gaps of the window about to leave the ring into the
	// long-term profiles (see profile.go).
	defer prof.fold(m.ids, (m.first+1)*tumbling, now)
	from := floorDiv(now-window, tumbling) * tumbling
	e := m.estimate(from, now)
	rep := &Report{
		Service: svc.Name, Policy: svc.Policy, Window: formatWindow(time.Duration(window)),
		From: time.Unix(0, from).UTC(), To: time.Unix(0, now).UTC(),
		AnsweredLabel: "decisions, not traffic",
		Nodes:         m.nodes,
		Identities:    len(m.ids),
	}
	if rep.Nodes == nil {
		rep.Nodes = []string{}
	}
	rep.fill(m, e)
	// The last three windows, for the alarms that need consecutive windows.
	last := floorDiv(now-1, tumbling)
	for i := last - 2; i <= last; i++ {
		if i < m.first {
			continue
		}
		rep.perWindow = append(rep.perWindow, *m.estimate(i*tumbling, min(now, (i+1)*tumbling)))
	}
	rep.alarms(m, e)
	rep.confidence(m, e)
	return rep, nil
}

// formatWindow prints 5m, 1h, 90s rather than 5m0s.
func formatWindow(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// windowEstimate is the estimate over one interval [from, to).
type windowEstimate struct {
	from, to                                         int64
	n                                                int       // endpoints
	answers                                          []uint64  // per endpoint
	total                                            uint64    // answers
	intended                                         []float64 // π̄
	up                                               []bool    // answerable at to
	answered                                         []float64 // A
	occupancy                                        []float64 // O
	est                                              []float64 // Ŝ
	lo, hi                                           []float64
	sigma                                            []float64 // σ of Ŝ for z
	z                                                []float64
	demand                                           float64   // Σ N: estimated lookups in the interval
	perID                                            []idShare // identities with demand in the interval
	tail                                             []float64 // point tail per endpoint (lookups)
	tailMax                                          []float64
	unattrib                                         float64
	unverified, admissions, evictions, eventsDropped uint64
	flood                                            bool // unverified answers far above their baseline
	windows                                          []int
}

// idShare is one identity's part of an interval: answers a and occupancy o
// (seconds) per endpoint, so its lookups to e are a_e + λ·o_e.
type idShare struct {
	id   *ident
	a, o []float64
	m    int // answers in the interval
	d    float64
	de   []float64 // point lookups per endpoint
}

// estimate computes the shares over [from, to).
func (m *merged) estimate(from, to int64) *windowEstimate {
	n := len(m.svc.Endpoints)
	e := &windowEstimate{from: from, to: to, n: n, answers: make([]uint64, n)}
	e.tail, e.tailMax = make([]float64, n), make([]float64, n)
	tailOcc := make([]float64, n)
	base := m.tailBaseline(to)
	for i := range m.wins {
		w := &m.wins[i]
		if w.start < from || w.start >= to {
			continue
		}
		e.windows = append(e.windows, i)
		e.total += w.total
		e.unverified += w.unverTotal
		e.admissions += w.admissions
		e.evictions += w.evictions
		e.eventsDropped += w.drop
		// A tail more than twice its calm level is a flood of sources
		// that never come back: only the calm level counts as demand.
		v := 1.0
		if r := tailRate(w, min(to, w.start+m.window)); base >= 0 && r > 2*base {
			v = base / r
		}
		if v < 0.5 && float64(w.unverTotal) > 0.25*float64(w.total) {
			e.flood = true
		}
		firstShare := 0.0
		if w.unverTotal > 0 {
			firstShare = min(float64(w.admissions)/float64(w.unverTotal), 1)
		}
		for j := 0; j < n; j++ {
			e.answers[j] += w.answers[j]
			t := float64(w.unverified[j]) * (1 - firstShare)
			e.tailMax[j] += t
			e.tail[j] += t * v
			if w.answers[j] > 0 {
				tailOcc[j] += t * v * float64(w.answerSeconds[j]) / float64(w.answers[j])
			}
		}
	}
	e.answered = normalize(toFloat(e.answers))
	e.intended, e.up = m.intent(from, to)
	occ := slices.Clone(tailOcc)
	for _, id := range m.ids {
		s := id.share(from, to, n)
		if s == nil {
			continue
		}
		for j := range occ {
			occ[j] += s.o[j]
		}
		e.perID = append(e.perID, *s)
	}
	e.occupancy = normalize(occ)
	e.solve(m.svc.Policy)
	return e
}

// tailRate is the rate (per second) of tail answers in window w up to end.
func tailRate(w *mwin, end int64) float64 {
	d := float64(end-w.start) / 1e9
	if d <= 0 {
		return 0
	}
	t := float64(w.unverTotal) - float64(w.admissions)
	return max(t, 0) / d
}

// tailBaseline is the calm level of the tail rate a flood is measured
// against: the lower quartile of the rates of the ring's windows that saw
// answers; -1 when none did.
func (m *merged) tailBaseline(to int64) float64 {
	var rates []float64
	for i := range m.wins {
		w := &m.wins[i]
		if w.total == 0 || w.start >= to {
			continue
		}
		rates = append(rates, tailRate(w, min(to, w.start+m.window)))
	}
	if len(rates) == 0 {
		return -1
	}
	slices.Sort(rates)
	return rates[(len(rates)-1)/4]
}

// holdEnd is when the cache behind the identity stops holding its i-th
// answer: after its life (the refresh floor) or at its next query, whichever
// is first. A pooled identity's answers each last their life (the next
// query is another cache's). A gap far longer than a busy cache can stay
// idle (λ̂ times the idle time above 4.6: probability below 1 %) is a hole
// in the sequence, not an idle cache, and the answer is taken to hold
// until the next one seen.
func (id *ident) holdEnd(i int) int64 {
	ev := id.ev[i]
	life := int64(id.life * 1e9)
	if life <= 0 {
		life = int64(max(ev.ttl, 1)) * 1e9
	}
	end := ev.at + life
	if i+1 < len(id.ev) && !id.pooled {
		next := id.ev[i+1].at
		if idle := float64(next-end) / 1e9; idle > 0 && id.lam*idle > 4.6 {
			return next
		}
		end = min(end, next)
	}
	return end
}

// share returns the identity's answers and occupancy over [from, to), or
// nil when it has none there.
func (id *ident) share(from, to int64, n int) *idShare {
	var s *idShare
	for i, ev := range id.ev {
		if ev.at >= to {
			break
		}
		end := id.holdEnd(i)
		o := float64(min(end, to)-max(ev.at, from)) / 1e9
		in := ev.at >= from
		if o <= 0 && !in {
			continue
		}
		if s == nil {
			s = &idShare{id: id, a: make([]float64, n), o: make([]float64, n)}
		}
		k := float64(bits.OnesCount64(ev.mask))
		for mask := ev.mask; mask != 0; mask &= mask - 1 {
			j := bits.TrailingZeros64(mask)
			if in {
				s.a[j] += 1 / k
			}
			if o > 0 {
				s.o[j] += o / k
			}
		}
		if in {
			s.m++
		}
	}
	return s
}

// solve computes Ŝ, its bracket and σ.
func (e *windowEstimate) solve(policy string) {
	n := e.n
	num := slices.Clone(e.tail)
	for i := range e.perID {
		s := &e.perID[i]
		s.de = make([]float64, n)
		for j := 0; j < n; j++ {
			s.de[j] = s.a[j] + s.id.rate(s.id.lam)*s.o[j]
			num[j] += s.de[j]
			s.d += s.de[j]
		}
	}
	total := sum(num)
	e.demand = total
	e.est = normalize(num)
	e.lo, e.hi, e.sigma, e.z = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	var bounded float64
	for _, s := range e.perID {
		if !s.id.precise() {
			bounded += s.d
		}
	}
	if total > 0 {
		e.unattrib = (bounded + sum(e.tail)) / total
	}
	for j := 0; j < n; j++ {
		mask := uint64(1) << j
		lo, hi := e.box(mask)
		sd := e.statSigma(j)
		e.lo[j] = clamp01(min(lo, e.est[j]) - 2*sd)
		e.hi[j] = clamp01(max(hi, e.est[j]) + 2*sd)
		sig := sd
		if policy != "latency" {
			sig = math.Sqrt(sd*sd + e.randomVar(j))
		}
		e.sigma[j] = max(sig, 1e-3)
		e.z[j] = (e.est[j] - e.intended[j]) / e.sigma[j]
	}
}

// box returns the smallest and largest share of the endpoints in mask over
// the box of bounded identities' demand and the tail's scale (Dinkelbach's
// iteration on the linear-fractional share).
func (e *windowEstimate) box(mask uint64) (lo, hi float64) {
	return e.extreme(mask, false), e.extreme(mask, true)
}

func (e *windowEstimate) extreme(mask uint64, maximize bool) float64 {
	in := func(j int) bool { return mask&(1<<j) != 0 }
	var tailIn, tailAll float64
	for j := 0; j < e.n; j++ {
		tailAll += e.tailMax[j]
		if in(j) {
			tailIn += e.tailMax[j]
		}
	}
	s := 0.0
	for j := 0; j < e.n; j++ {
		if in(j) {
			s += e.est[j]
		}
	}
	for iter := 0; iter < 50; iter++ {
		var num, den float64
		better := func(cIn, cAll float64) bool { // is the coefficient positive for the objective
			c := cIn - s*cAll
			if maximize {
				return c > 0
			}
			return c < 0
		}
		if better(tailIn, tailAll) {
			num += tailIn
			den += tailAll
		}
		for i := range e.perID {
			p := &e.perID[i]
			var aIn, aAll, oIn, oAll float64
			for j := 0; j < e.n; j++ {
				aAll += p.a[j]
				oAll += p.o[j]
				if in(j) {
					aIn += p.a[j]
					oIn += p.o[j]
				}
			}
			lam := p.id.lam
			if p.id.bounded {
				lam = p.id.lamLo
				if better(oIn, oAll) {
					lam = p.id.lamHi
				}
			}
			num += aIn + p.id.rate(lam)*oIn
			den += aAll + p.id.rate(lam)*oAll
		}
		next := 0.0
		if den > 0 {
			next = num / den
		}
		if math.Abs(next-s) < 1e-12 {
			return next
		}
		s = next
	}
	return s
}

// statSigma is the standard deviation of Ŝ_j from the sampling error of the
// measured identities' λ̂ and the Poisson noise of the lookups themselves.
func (e *windowEstimate) statSigma(j int) float64 {
	if e.demand <= 0 {
		return 0
	}
	var v float64
	for _, p := range e.perID {
		if p.id.bounded || p.id.lamVar == 0 {
			continue
		}
		oAll := sum(p.o)
		g := (p.o[j] - e.est[j]*oAll) / e.demand
		v += g * g * p.id.lamVar * p.id.perCache * p.id.perCache
	}
	v += e.est[j] * (1 - e.est[j]) / e.demand
	return math.Sqrt(v)
}

// randomVar is the variance of the random skew of a per-query draw,
// π(1−π)·Σ s_r²/m_r (SKEW.md), over identities and the tail's answers.
func (e *windowEstimate) randomVar(j int) float64 {
	if e.demand <= 0 {
		return 0
	}
	pi := e.intended[j]
	var sum2 float64
	for _, p := range e.perID {
		s := p.d / e.demand
		sum2 += s * s / float64(max(p.m, 1))
	}
	if t := sum(e.tail); t > 0 {
		sum2 += (t / e.demand) * (t / e.demand) / t
	}
	return pi * (1 - pi) * sum2
}

// intent returns the time-averaged intended share over [from, to) and
// whether each endpoint is answerable at to.
func (m *merged) intent(from, to int64) ([]float64, []bool) {
	n := len(m.svc.Endpoints)
	up := make([]bool, n)
	weight := make([]float64, n)
	for j, ep := range m.svc.Endpoints {
		up[j], weight[j] = true, ep.Weight
	}
	avg := make([]float64, n)
	t := from
	add := func(until int64) {
		if until <= t {
			return
		}
		p := intendedAt(m.svc, up, weight)
		for j := range avg {
			avg[j] += p[j] * float64(until-t)
		}
		t = until
	}
	for _, h := range m.health {
		if h.At >= to {
			break
		}
		add(h.At)
		up[h.Endpoint], weight[h.Endpoint] = h.Up, h.Weight
	}
	add(to)
	out := normalize(avg)
	if sum(avg) == 0 {
		out = intendedAt(m.svc, up, weight)
	}
	ok := make([]bool, n)
	for j := range ok {
		ok[j] = up[j] && weight[j] > 0
	}
	return out, ok
}

// intendedAt is the target split for one health state: by weight among the
// answerable endpoints (failover: of the best priority), by capacity for
// the latency policy; when none is answerable, as if all were (fail-open).
func intendedAt(svc Service, up []bool, weight []float64) []float64 {
	n := len(svc.Endpoints)
	p := make([]float64, n)
	pick := func(onlyUp bool) {
		best := math.MaxInt
		if svc.Policy == "failover" {
			for j, ep := range svc.Endpoints {
				if (!onlyUp || up[j]) && weight[j] > 0 {
					best = min(best, ep.Priority)
				}
			}
		}
		for j, ep := range svc.Endpoints {
			if (onlyUp && !up[j]) || weight[j] <= 0 {
				continue
			}
			if svc.Policy == "failover" && ep.Priority != best {
				continue
			}
			p[j] = weight[j]
			if svc.Policy == "latency" {
				p[j] = ep.Capacity
				if p[j] == 0 {
					p[j] = weight[j]
				}
			}
		}
	}
	pick(true)
	if sum(p) == 0 {
		pick(false)
	}
	if sum(p) == 0 {
		for j := range p {
			p[j] = 1
		}
	}
	return normalize(p)
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

func normalize(v []float64) []float64 {
	out := make([]float64, len(v))
	s := sum(v)
	if s <= 0 {
		return out
	}
	for i, x := range v {
		out[i] = x / s
	}
	return out
}

func toFloat(v []uint64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func clamp01(x float64) float64 { return min(max(x, 0), 1) }

// fill copies the estimate e into the report's tables.
func (rep *Report) fill(m *merged, e *windowEstimate) {
	rep.Answers = e.total
	rep.Unverified = e.unverified
	rep.Unattrib = e.unattrib
	rep.Windows = []WindowNodes{}
	for _, i := range e.windows {
		if w := &m.wins[i]; len(w.nodes) > 0 {
			rep.Windows = append(rep.Windows, WindowNodes{Start: time.Unix(0, w.start).UTC(), Nodes: w.nodes})
		}
	}
	var tvd float64
	for j, ep := range m.svc.Endpoints {
		es := EndpointShare{
			Name: ep.Name, Region: ep.Region, Intended: e.intended[j], Answered: e.answered[j],
			Occupancy: e.occupancy[j], Estimated: e.est[j], Lo: e.lo[j], Hi: e.hi[j],
			Z: e.z[j], Answers: e.answers[j], NEff: e.endpointNEff(j), Up: e.up[j],
		}
		if es.Intended > 0 {
			es.Rho = es.Estimated / es.Intended
		}
		for _, i := range e.windows {
			es.Identities += m.wins[i].idents[j].Count()
			es.Subnets += m.wins[i].subnets[j].Count()
		}
		tvd += math.Abs(es.Estimated - es.Intended)
		rep.Endpoints = append(rep.Endpoints, es)
	}
	rep.TVD = tvd / 2
	rep.regions(m, e)
	rep.concentration(e)
	rep.ttl(m, e)
	rep.contributors(e)
	rep.Recording = RecordingHealth{
		Dropped: m.dropped, Late: m.late, EventsDropped: e.eventsDropped,
		Evictions: e.evictions, Admissions: e.admissions, Truncated: m.truncated,
	}
	rep.Alarms = []Alarm{}
}

// endpointNEff is (Σ_r D_r,e)²/Σ_r D_r,e² over identities.
func (e *windowEstimate) endpointNEff(j int) float64 {
	var s, s2 float64
	for _, p := range e.perID {
		s += p.de[j]
		s2 += p.de[j] * p.de[j]
	}
	if s2 == 0 {
		return 0
	}
	return s * s / s2
}

func (rep *Report) regions(m *merged, e *windowEstimate) {
	var names []string
	for _, ep := range m.svc.Endpoints {
		if !slices.Contains(names, ep.Region) {
			names = append(names, ep.Region)
		}
	}
	for _, name := range names {
		var mask uint64
		rs := RegionShare{Name: name}
		for j, ep := range m.svc.Endpoints {
			if ep.Region == name {
				mask |= 1 << j
				rs.Intended += e.intended[j]
				rs.Answered += e.answered[j]
				rs.Estimated += e.est[j]
			}
		}
		lo, hi := e.box(mask)
		var sd float64
		for j := range m.svc.Endpoints {
			if mask&(1<<j) != 0 {
				sd += e.statSigma(j)
			}
		}
		rs.Lo, rs.Hi = clamp01(min(lo, rs.Estimated)-2*sd), clamp01(max(hi, rs.Estimated)+2*sd)
		rep.Regions = append(rep.Regions, rs)
	}
}

func (rep *Report) concentration(e *windowEstimate) {
	if e.demand <= 0 {
		return
	}
	shares := make([]float64, 0, len(e.perID))
	for _, p := range e.perID {
		shares = append(shares, p.d/e.demand)
	}
	slices.SortFunc(shares, func(a, b float64) int { return cmp.Compare(b, a) })
	c := &rep.Concentration
	for i, s := range shares {
		if i < 1 {
			c.Top1 += s
		}
		if i < 5 {
			c.Top5 += s
		}
		if i < 20 {
			c.Top20 += s
		}
		c.HHI += s * s
	}
	if c.HHI > 0 {
		c.NEff = 1 / c.HHI
	}
}

func (rep *Report) ttl(m *merged, e *windowEstimate) {
	t := &rep.TTL
	floors := map[float64]*ClampFloor{}
	for _, p := range e.perID {
		share := 0.0
		if e.demand > 0 {
			share = p.d / e.demand
		}
		switch p.id.class {
		case classClamped:
			t.Clamped++
			t.ClampedShare += share
			f := math.Round(p.id.floor/10) * 10
			if floors[f] == nil {
				floors[f] = &ClampFloor{FloorS: f}
			}
			floors[f].Identities++
			floors[f].Share += share
		case classPrefetch:
			t.Prefetching++
		case classPooled:
			t.Pooled++
		case classSaturated:
			t.Saturated++
		}
	}
	for _, f := range floors {
		t.Clamps = append(t.Clamps, *f)
	}
	slices.SortFunc(t.Clamps, func(a, b ClampFloor) int { return cmp.Compare(a.FloorS, b.FloorS) })
	if t.Clamps == nil {
		t.Clamps = []ClampFloor{}
	}
	m.drain(t, e.to)
}

// drain finds the latest time an endpoint stopped being answerable and how
// long the demand its caches still held took to fall below 5 % and 1 %.
func (m *merged) drain(t *TTLBehaviour, now int64) {
	n := len(m.svc.Endpoints)
	up := make([]bool, n)
	for j, ep := range m.svc.Endpoints {
		up[j] = ep.Weight > 0
	}
	leave, who := int64(0), -1
	for _, h := range m.health {
		if h.At > now {
			break
		}
		was := up[h.Endpoint]
		up[h.Endpoint] = h.Up && h.Weight > 0
		if was && !up[h.Endpoint] {
			leave, who = h.At, h.Endpoint
		} else if !was && up[h.Endpoint] && who == h.Endpoint {
			who = -1 // it came back
		}
	}
	if who < 0 {
		return
	}
	type hold struct {
		end int64
		lam float64
	}
	var holds []hold
	var p0 float64
	bit := uint64(1) << who
	for _, id := range m.ids {
		// the answer the identity's cache held at leave
		i, _ := slices.BinarySearchFunc(id.ev, leave, func(e idEvent, t int64) int { return cmp.Compare(e.at, t+1) })
		if i == 0 {
			continue
		}
		ev := id.ev[i-1]
		end := id.holdEnd(i - 1)
		if ev.mask&bit == 0 || end <= leave {
			continue
		}
		lam := id.rate(id.lam) / float64(bits.OnesCount64(ev.mask))
		holds = append(holds, hold{end, lam})
		p0 += lam
	}
	t.DrainEndpoint = m.svc.Endpoints[who].Name
	at := time.Unix(0, leave).UTC()
	t.DrainAt = &at
	if p0 == 0 {
		t.DrainDone = true
		return
	}
	slices.SortFunc(holds, func(a, b hold) int { return cmp.Compare(a.end, b.end) })
	left := p0
	t.Drain5, t.Drain1 = -1, -1
	for _, h := range holds {
		if h.end > now {
			break
		}
		left -= h.lam
		if t.Drain5 < 0 && left < 0.05*p0 {
			t.Drain5 = float64(h.end-leave) / 1e9
		}
		if t.Drain1 < 0 && left < 0.01*p0 {
			t.Drain1 = float64(h.end-leave) / 1e9
		}
	}
	t.DrainDone = t.Drain1 >= 0
	if t.Drain5 < 0 {
		t.Drain5 = float64(now-leave) / 1e9
	}
	if t.Drain1 < 0 {
		t.Drain1 = float64(now-leave) / 1e9
	}
}

// maxContributors is how many top contributors a report lists.
const maxContributors = 10

func (rep *Report) contributors(e *windowEstimate) {
	rep.Top = []Contributor{}
	if e.demand <= 0 {
		return
	}
	for _, p := range e.perID {
		if p.d <= 0 {
			continue
		}
		s := p.d / e.demand
		best, bj := 0.0, -1
		for j := 0; j < e.n; j++ {
			c := s * (p.de[j]/p.d - e.intended[j])
			if bj < 0 || math.Abs(c) > math.Abs(best) {
				best, bj = c, j
			}
		}
		rep.Top = append(rep.Top, Contributor{
			Identity: identityString(p.id.src, p.id.ecs), Share: s, Endpoint: rep.Endpoints[bj].Name,
			Contribution: best, Class: p.id.class, Demand: p.id.lam,
		})
	}
	slices.SortFunc(rep.Top, func(a, b Contributor) int {
		return cmp.Compare(math.Abs(b.Contribution), math.Abs(a.Contribution))
	})
	if len(rep.Top) > maxContributors {
		rep.Top = rep.Top[:maxContributors]
	}
}

// alarms raises the alarms of SKEW.md.
func (rep *Report) alarms(m *merged, e *windowEstimate) {
	healthy := 0
	for j := range m.svc.Endpoints {
		if e.up[j] {
			healthy++
		}
	}
	for j, ep := range m.svc.Endpoints {
		if rep.activePassive(j) {
			rep.raise(AlarmActivePassive, ep.Name, fmt.Sprintf(
				"for 3 windows its estimated share stayed below a quarter of the intended %.0f%% (now %.1f%%, at most %.1f%%)",
				100*e.intended[j], 100*e.est[j], 100*e.hi[j]))
		}
		if healthy >= 2 && e.lo[j] > 0.9 {
			rep.raise(AlarmEffectivelyActivePassive, ep.Name, fmt.Sprintf(
				"at least %.1f%% of the demand goes to it while %d endpoints are healthy", 100*e.lo[j], healthy))
		}
		if e.intended[j] > 0 && e.lo[j] > 1.5*e.intended[j] {
			rep.raise(AlarmHot, ep.Name, fmt.Sprintf(
				"at least %.1f%% of the demand, more than 1.5× the intended %.1f%%", 100*e.lo[j], 100*e.intended[j]))
		}
		if e.est[j] >= concentratedMinShare {
			neff := e.endpointNEff(j)
			top, who := e.topIdentity(j)
			switch {
			case neff > 0 && neff < 3:
				rep.raise(AlarmConcentrated, ep.Name, fmt.Sprintf(
					"its demand comes from %.1f effective caches", neff))
			case top > 0.5:
				rep.raise(AlarmConcentrated, ep.Name, fmt.Sprintf(
					"one cache (%s) carries %.0f%% of its demand", who, 100*top))
			}
		}
	}
}

// concentratedMinShare is the estimated share below which an endpoint is
// not checked for concentration (a trickle is always concentrated).
const concentratedMinShare = 0.05

// topIdentity returns the largest share of endpoint j's demand one identity
// carries, and who.
func (e *windowEstimate) topIdentity(j int) (float64, string) {
	var s, best float64
	var who string
	for _, p := range e.perID {
		s += p.de[j]
		if p.de[j] > best {
			best, who = p.de[j], identityString(p.id.src, p.id.ecs)
		}
	}
	if s == 0 {
		return 0, ""
	}
	return best / s, who
}

// activePassive reports whether endpoint j met the ACTIVE_PASSIVE condition
// in each of the last three windows.
func (rep *Report) activePassive(j int) bool {
	if len(rep.perWindow) < 3 {
		return false
	}
	for _, w := range rep.perWindow {
		// A window without answers is no evidence either way: an idle
		// service (or one that just started) is not active-passive.
		if w.total == 0 || !w.up[j] || w.intended[j] < 0.1 || w.hi[j] >= w.intended[j]/4 || w.z[j] >= -3 {
			return false
		}
	}
	return true
}

func (rep *Report) raise(kind, endpoint, detail string) {
	rep.Alarms = append(rep.Alarms, Alarm{Kind: kind, Endpoint: endpoint, Detail: detail})
}

// confidence grades the report (SKEW.md): High when N_eff ≥ 30, U ≤ 10 %
// and the widest bracket ≤ 5 pp; Medium when N_eff ≥ 10, U ≤ 30 % and ≤ 15
// pp; Low otherwise, or under heavy top-k eviction or an unverified flood.
func (rep *Report) confidence(m *merged, e *windowEstimate) {
	width := 0.0
	for j := range e.est {
		width = max(width, e.hi[j]-e.lo[j])
	}
	neff, u := rep.Concentration.NEff, e.unattrib
	var reasons []string
	grade := "High"
	lower := func(g string) {
		if g == "Low" || grade == "High" {
			grade = g
		}
	}
	check := func(ok bool, g, why string) {
		if !ok {
			lower(g)
			reasons = append(reasons, why)
		}
	}
	check(neff >= 30, "Medium", fmt.Sprintf("%.1f effective caches (High needs 30)", neff))
	check(neff >= 10, "Low", fmt.Sprintf("%.1f effective caches (Medium needs 10)", neff))
	check(u <= 0.10, "Medium", fmt.Sprintf("%.0f%% of the demand is unattributable (High needs ≤ 10%%)", 100*u))
	check(u <= 0.30, "Low", fmt.Sprintf("%.0f%% of the demand is unattributable (Medium needs ≤ 30%%)", 100*u))
	check(width <= 0.05, "Medium", fmt.Sprintf("the widest bracket is %.1f pp (High needs ≤ 5)", 100*width))
	check(width <= 0.15, "Low", fmt.Sprintf("the widest bracket is %.1f pp (Medium needs ≤ 15)", 100*width))
	logged := len(e.perID)
	check(!(e.evictions > 100 && float64(e.evictions) > 0.1*float64(logged)), "Low",
		fmt.Sprintf("heavy top-k eviction (%d identities evicted)", e.evictions))
	check(!e.flood, "Low", fmt.Sprintf("unverified flood: %d answers to sources never seen twice", e.unverified))
	check(e.total > 0, "Low", "no answers recorded in the window")
	check(e.eventsDropped == 0, "Low", fmt.Sprintf("%d answers of tracked caches were not logged (event budget)", e.eventsDropped))
	if len(m.truncated) > 0 {
		lower("Medium")
		reasons = append(reasons, fmt.Sprintf("exports of %v left sequences out (size bound)", m.truncated))
	}
	if reasons == nil {
		reasons = []string{fmt.Sprintf("%.0f effective caches, %.0f%% unattributable, brackets within %.1f pp", neff, 100*u, 100*width)}
	}
	rep.Confidence = Confidence{Grade: grade, Reasons: reasons}
}
