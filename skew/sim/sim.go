// Package sim is a seeded simulator of resolver caches in front of a
// meridian service. It drives the real skew.Recorder (and its reports and
// exports) with a synthetic query stream and keeps the ground truth the
// recorder cannot see: how many client lookups each endpoint really got.
//
// The model is SKEW.md's: a cache whose answer expired at t asks again at
// t + τ + X, X exponential with the client lookup rate λ behind it, where τ
// is its refresh floor — the TTL sent when it honours it, max(TTL, C) when
// it clamps to C (60, 300, 600 s), 0.9·TTL when it prefetches. Every client
// lookup between two queries gets the answer of the first: the lookup that
// triggered the query, then Poisson(λ·τ) more while the answer is cached.
// A resolver identity is one cache, or several pooled caches behind one
// address (a public resolver without ECS), or one cache per client /24 (a
// public resolver with ECS). Policies: weighted (independent draws, or the
// low-discrepancy Weyl sequence), latency (each client region's preference
// list of endpoints; a Move changes it) and failover. Events: health and
// weight changes (drain, flap), moves, and floods of spoofed one-shot
// sources, which carry no client at all. Queries reach one of the nodes,
// chosen at random per query (a resolver spreads over the NS set); network
// jitter shifts each arrival by up to Config.Jitter.
//
// Like serf's coordinate/phantom.go, everything is driven by one seeded
// generator, so a scenario replays exactly.
package sim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sort"
	"time"

	"meridian/skew"
)

// T0 is the simulated start time, aligned to any window.
var T0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// Behaviour is how a cache treats the TTL.
type Behaviour int

// TTL behaviours.
const (
	Honour   Behaviour = iota // refresh floor = the TTL sent
	Clamp                     // refresh floor = max(TTL, Cache.Clamp)
	Prefetch                  // refresh floor = 0.9·TTL
)

// String names the behaviour.
func (b Behaviour) String() string {
	return [...]string{"honour", "clamp", "prefetch"}[b]
}

// Identity is one cache identity as meridian sees it: a source address and
// an ECS subnet, with one or more caches behind it.
type Identity struct {
	Source netip.Addr
	ECS    netip.Prefix
	Region int    // client region, for the latency policy
	Kind   string // isp, public-ecs, public-pooled, ...
	Caches []int  // indexes into Population.Caches
}

// Cache is one resolver cache: a renewal process.
type Cache struct {
	Identity  int
	Lambda    float64 // client lookups per second
	Behaviour Behaviour
	Clamp     float64 // seconds, for Clamp
}

// Population is the set of identities and caches of a scenario.
type Population struct {
	Identities []Identity
	Caches     []Cache
	next       uint32 // next synthetic address
}

// Demand returns an identity's total client lookup rate.
func (p *Population) Demand(i int) float64 {
	var l float64
	for _, c := range p.Identities[i].Caches {
		l += p.Caches[c].Lambda
	}
	return l
}

// addr returns a fresh synthetic resolver address in 10.0.0.0/8.
func (p *Population) addr() netip.Addr {
	p.next++
	n := p.next
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

// Add adds one identity with the given caches (their Identity is set) and
// returns its index.
func (p *Population) Add(id Identity, caches ...Cache) int {
	if !id.Source.IsValid() {
		id.Source = p.addr()
	}
	i := len(p.Identities)
	for _, c := range caches {
		c.Identity = i
		id.Caches = append(id.Caches, len(p.Caches))
		p.Caches = append(p.Caches, c)
	}
	p.Identities = append(p.Identities, id)
	return i
}

// Mix is the share of caches with each TTL behaviour (the rest honour).
type Mix struct {
	Clamp60, Clamp300, Clamp600, Prefetch float64
}

// pick draws a behaviour from the mix.
func (m Mix) pick(rnd *rand.Rand) (Behaviour, float64) {
	u := rnd.Float64()
	for _, c := range []struct {
		p float64
		b Behaviour
		s float64
	}{{m.Clamp60, Clamp, 60}, {m.Clamp300, Clamp, 300}, {m.Clamp600, Clamp, 600}, {m.Prefetch, Prefetch, 0}} {
		if u < c.p {
			return c.b, c.s
		}
		u -= c.p
	}
	return Honour, 0
}

// AddZipf adds n single-cache ISP resolvers whose demands follow
// Zipf(alpha) and sum to total lookups per second; region gives each its
// client region (by rank), mix its TTL behaviour. It returns their indexes.
func (p *Population) AddZipf(rnd *rand.Rand, n int, alpha, total float64, region func(rank int) int, mix Mix) []int {
	var h float64
	for i := 1; i <= n; i++ {
		h += math.Pow(float64(i), -alpha)
	}
	out := make([]int, n)
	for i := 1; i <= n; i++ {
		b, c := mix.pick(rnd)
		out[i-1] = p.Add(Identity{Region: region(i - 1), Kind: "isp"},
			Cache{Lambda: total * math.Pow(float64(i), -alpha) / h, Behaviour: b, Clamp: c})
	}
	return out
}

// AddPublicECS adds a public resolver that sends ECS: one identity per
// client /24 (subnets of them, Zipf(1) demand summing to total), each in
// the client region region(i).
func (p *Population) AddPublicECS(subnets int, total float64, region func(i int) int) []int {
	src := p.addr()
	var h float64
	for i := 1; i <= subnets; i++ {
		h += 1 / float64(i)
	}
	out := make([]int, subnets)
	for i := 0; i < subnets; i++ {
		ecs := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>8), byte(i), 0}), 24)
		out[i] = p.Add(Identity{Source: src, ECS: ecs, Region: region(i), Kind: "public-ecs"},
			Cache{Lambda: total / h / float64(i+1)})
	}
	return out
}

// AddPooled adds a public resolver without ECS: caches pooled caches behind
// one address, sharing total demand equally.
func (p *Population) AddPooled(caches int, total float64, region int) int {
	cs := make([]Cache, caches)
	for i := range cs {
		cs[i] = Cache{Lambda: total / float64(caches)}
	}
	return p.Add(Identity{Region: region, Kind: "public-pooled"}, cs...)
}

// Change is a health or weight change of an endpoint at an offset from T0.
type Change struct {
	At       time.Duration
	Endpoint int
	Up       bool
	Weight   float64
}

// Move changes the latency preference of a client region at an offset.
type Move struct {
	At     time.Duration
	Region int
	Prefer []int
}

// Flood is a flood of spoofed one-shot sources.
type Flood struct {
	From, To time.Duration
	Rate     float64 // queries per second
}

// Config is a scenario.
type Config struct {
	Seed    uint64
	Service skew.Service
	Window  time.Duration // 0: skew.DefaultWindow
	TopK    int           // 0: 10000
	Nodes   int           // 0: 1
	// Single also records every answer into one extra recorder, as if one
	// node had received all queries (for the merge criterion).
	Single bool
	// Prefer is each client region's endpoint preference (latency policy).
	Prefer [][]int
	// LowDiscrepancy answers weighted draws with the Weyl sequence.
	LowDiscrepancy bool
	Jitter         time.Duration // network jitter per arrival, uniform in [0, Jitter)
	Changes        []Change
	Moves          []Move
	Floods         []Flood
}

// Sim is a running scenario.
type Sim struct {
	cfg       Config
	pop       *Population
	rnd       *rand.Rand
	window    int64
	Recorders []*skew.Recorder // one per node; node 0 reports
	Single    *skew.Recorder   // nil unless Config.Single
	now       int64
	q         actorQueue
	up        []bool
	weight    []float64
	prefer    [][]int
	truth     map[int64][]float64 // window number → lookups per endpoint
	byID      map[int64]map[int][]float64
	// Sent counts the answers recorded per endpoint (all nodes).
	Sent     []uint64
	Spoofed  uint64
	identity []uint64 // IdentityHash per identity
	recorded uint64
	holds    []hold // per cache: the answer it holds and until when
}

// hold is the answer a cache holds.
type hold struct {
	endpoint int
	until    int64
}

// flushEvery is how many answers the simulator records between drains of
// the recorders' hand-off (well below its capacity, so nothing is dropped
// and the run is deterministic).
const flushEvery = 4096

// actor is something that happens at a time: a cache's next query, a flood
// arrival, a change, a move.
type actor struct {
	at    int64
	kind  int // actCache, actFlood, actChange, actMove
	index int
}

const (
	actCache = iota
	actFlood
	actChange
	actMove
)

// actorQueue is a min-heap of actors by time (container/heap).
type actorQueue []actor

func (q actorQueue) Len() int           { return len(q) }
func (q actorQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q actorQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *actorQueue) Push(x any)        { *q = append(*q, x.(actor)) }
func (q *actorQueue) Pop() any          { old := *q; x := old[len(old)-1]; *q = old[:len(old)-1]; return x }

// New builds a scenario over pop; nothing runs until Step.
func New(cfg Config, pop *Population) (*Sim, error) {
	if cfg.Window == 0 {
		cfg.Window = skew.DefaultWindow
	}
	if cfg.TopK == 0 {
		cfg.TopK = 10000
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 1
	}
	if len(pop.Identities) == 0 {
		return nil, errors.New("sim: empty population")
	}
	n := len(cfg.Service.Endpoints)
	s := &Sim{
		cfg: cfg, pop: pop, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)),
		window: int64(cfg.Window), now: T0, truth: map[int64][]float64{}, byID: map[int64]map[int][]float64{},
		up: make([]bool, n), weight: make([]float64, n), Sent: make([]uint64, n),
	}
	for j, e := range cfg.Service.Endpoints {
		s.up[j], s.weight[j] = true, e.Weight
	}
	s.prefer = append([][]int(nil), cfg.Prefer...)
	newRec := func(node string) (*skew.Recorder, error) {
		return skew.New(skew.Config{Node: node, TopK: cfg.TopK, Window: cfg.Window, Services: []skew.Service{cfg.Service}})
	}
	for i := 0; i < cfg.Nodes; i++ {
		r, err := newRec(fmt.Sprintf("n%d", i+1))
		if err != nil {
			return nil, err
		}
		s.Recorders = append(s.Recorders, r)
	}
	if cfg.Single {
		r, err := newRec("single")
		if err != nil {
			return nil, err
		}
		s.Single = r
	}
	for _, id := range pop.Identities {
		s.identity = append(s.identity, skew.IdentityHash(id.Source, 0, id.ECS))
	}
	s.holds = make([]hold, len(pop.Caches))
	// Caches start at a random phase of a first gap.
	for i, c := range pop.Caches {
		first := s.rnd.Float64() * (s.floor(c) + 1/c.Lambda)
		heap.Push(&s.q, actor{at: T0 + int64(first*1e9), kind: actCache, index: i})
	}
	for i, f := range cfg.Floods {
		heap.Push(&s.q, actor{at: T0 + int64(f.From) + s.exp(f.Rate), kind: actFlood, index: i})
	}
	for i, c := range cfg.Changes {
		heap.Push(&s.q, actor{at: T0 + int64(c.At), kind: actChange, index: i})
	}
	for i, m := range cfg.Moves {
		heap.Push(&s.q, actor{at: T0 + int64(m.At), kind: actMove, index: i})
	}
	return s, nil
}

// exp draws an exponential wait (nanoseconds) at rate per second.
func (s *Sim) exp(rate float64) int64 {
	return int64(s.rnd.ExpFloat64() / rate * 1e9)
}

// floor is a cache's refresh floor in seconds.
func (s *Sim) floor(c Cache) float64 {
	ttl := float64(s.cfg.Service.TTL)
	switch c.Behaviour {
	case Clamp:
		return max(ttl, c.Clamp)
	case Prefetch:
		return 0.9 * ttl
	}
	return ttl
}

// Now is the simulated time.
func (s *Sim) Now() int64 { return s.now }

// Step runs the scenario to the end of the current window and returns that
// time.
func (s *Sim) Step() int64 {
	end := (s.now/s.window + 1) * s.window
	s.RunUntil(end)
	return end
}

// RunUntil runs the scenario until (not including) time t.
func (s *Sim) RunUntil(t int64) {
	for len(s.q) > 0 && s.q[0].at < t {
		a := heap.Pop(&s.q).(actor)
		s.now = a.at
		switch a.kind {
		case actCache:
			s.query(a.index, a.at)
		case actFlood:
			s.spoof(a.index, a.at)
		case actChange:
			s.change(s.cfg.Changes[a.index], a.at)
		case actMove:
			m := s.cfg.Moves[a.index]
			s.prefer[m.Region] = m.Prefer
		}
	}
	s.now = t
}

// query is cache ci asking at time at.
func (s *Sim) query(ci int, at int64) {
	c := s.pop.Caches[ci]
	id := &s.pop.Identities[c.Identity]
	e := s.answer(c.Identity, id.Region, at)
	s.record(id.Source, id.ECS, e, at)
	tau := s.floor(c)
	held := int64(tau * 1e9)
	s.holds[ci] = hold{endpoint: e, until: at + held}
	// Truth: the triggering lookup, then Poisson(λ) lookups while cached.
	s.addTruth(at, e, 1, c.Identity)
	s.spread(at, at+held, e, c.Lambda, c.Identity)
	heap.Push(&s.q, actor{at: at + held + s.exp(c.Lambda), kind: actCache, index: ci})
}

// DrainTruth returns, for endpoint e leaving the answers at time at, how
// long until the client demand whose caches still hold e falls below 5 %
// and 1 % of what it was at that moment (seconds), from the caches' true
// holds; call it at the moment of leaving.
func (s *Sim) DrainTruth(e int, at int64) (d5, d1 float64) {
	type h struct {
		until int64
		lam   float64
	}
	var hs []h
	var p0 float64
	for ci, x := range s.holds {
		if x.endpoint == e && x.until > at {
			hs = append(hs, h{x.until, s.pop.Caches[ci].Lambda})
			p0 += s.pop.Caches[ci].Lambda
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].until < hs[j].until })
	left := p0
	d5, d1 = -1, -1
	for _, x := range hs {
		left -= x.lam
		if d5 < 0 && left < 0.05*p0 {
			d5 = float64(x.until-at) / 1e9
		}
		if d1 < 0 && left < 0.01*p0 {
			d1 = float64(x.until-at) / 1e9
		}
	}
	return d5, d1
}

// spread adds Poisson(λ·overlap) lookups to endpoint e for each window
// overlapping [from, to).
func (s *Sim) spread(from, to int64, e int, lambda float64, id int) {
	for t := from; t < to; {
		wend := (t/s.window + 1) * s.window
		end := min(wend, to)
		s.addTruth(t, e, float64(s.poisson(lambda*float64(end-t)/1e9)), id)
		t = end
	}
}

func (s *Sim) addTruth(at int64, e int, n float64, id int) {
	w := at / s.window
	v := s.truth[w]
	if v == nil {
		v = make([]float64, len(s.cfg.Service.Endpoints))
		s.truth[w] = v
	}
	v[e] += n
	m := s.byID[w]
	if m == nil {
		m = map[int][]float64{}
		s.byID[w] = m
	}
	if m[id] == nil {
		m[id] = make([]float64, len(s.cfg.Service.Endpoints))
	}
	m[id][e] += n
}

// TruthByIdentity returns the true lookups per endpoint of each identity
// in the window starting at start.
func (s *Sim) TruthByIdentity(start int64) map[int][]float64 {
	return s.byID[start/s.window]
}

// poisson draws a Poisson variate (normal approximation above 30).
func (s *Sim) poisson(mu float64) int {
	if mu <= 0 {
		return 0
	}
	if mu > 30 {
		return max(0, int(math.Round(mu+math.Sqrt(mu)*s.rnd.NormFloat64())))
	}
	l, k, p := math.Exp(-mu), 0, 1.0
	for {
		p *= s.rnd.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// answer is the endpoint the policy answers identity idx (client region
// region) at time at.
func (s *Sim) answer(idx, region int, at int64) int {
	svc := s.cfg.Service
	ok := func(j int) bool { return s.up[j] && s.weight[j] > 0 }
	any := false
	for j := range svc.Endpoints {
		any = any || ok(j)
	}
	if !any { // fail-open
		ok = func(j int) bool { return svc.Endpoints[j].Weight > 0 }
	}
	switch svc.Policy {
	case "latency":
		if region >= 0 && region < len(s.prefer) {
			for _, j := range s.prefer[region] {
				if ok(j) {
					return j
				}
			}
		}
	case "failover":
		best := math.MaxInt
		for j, e := range svc.Endpoints {
			if ok(j) {
				best = min(best, e.Priority)
			}
		}
		return s.draw(idx, at, func(j int) bool { return ok(j) && svc.Endpoints[j].Priority == best })
	}
	return s.draw(idx, at, ok)
}

// draw picks among the endpoints ok allows by weight: a random draw, or the
// Weyl point of the identity in its TTL slot.
func (s *Sim) draw(idx int, at int64, ok func(int) bool) int {
	var total float64
	for j := range s.weight {
		if ok(j) {
			total += s.weight[j]
		}
	}
	if total == 0 {
		return 0
	}
	u := s.rnd.Float64()
	if s.cfg.LowDiscrepancy && idx >= 0 {
		u = skew.WeylPoint(s.identity[idx], skew.Slot(at, s.cfg.Service.TTL))
	}
	x := u * total
	last := 0
	for j := range s.weight {
		if !ok(j) {
			continue
		}
		last = j
		if x < s.weight[j] {
			return j
		}
		x -= s.weight[j]
	}
	return last
}

// record sends the answer to a random node (and the single recorder).
func (s *Sim) record(src netip.Addr, ecs netip.Prefix, e int, at int64) {
	if s.cfg.Jitter > 0 {
		at += s.rnd.Int64N(int64(s.cfg.Jitter))
	}
	a := skew.Answer{Service: 0, Source: src, ECS: ecs, Endpoints: 1 << e, TTL: s.cfg.Service.TTL, At: at}
	s.Recorders[s.rnd.IntN(len(s.Recorders))].Record(a)
	if s.Single != nil {
		s.Single.Record(a)
	}
	s.Sent[e]++
	if s.recorded++; s.recorded%flushEvery == 0 {
		for _, r := range s.all() {
			r.Flush()
		}
	}
}

// spoof is one query of flood fi from a fresh random source.
func (s *Sim) spoof(fi int, at int64) {
	f := s.cfg.Floods[fi]
	src := netip.AddrFrom4([4]byte{byte(11 + s.rnd.IntN(180)), byte(s.rnd.Uint32()), byte(s.rnd.Uint32()), byte(s.rnd.Uint32())})
	s.record(src, netip.Prefix{}, s.answer(-1, 0, at), at)
	s.Spoofed++
	if next := at + s.exp(f.Rate); next < T0+int64(f.To) {
		heap.Push(&s.q, actor{at: next, kind: actFlood, index: fi})
	}
}

// change applies a health change and tells every recorder.
func (s *Sim) change(c Change, at int64) {
	s.up[c.Endpoint], s.weight[c.Endpoint] = c.Up, c.Weight
	for _, r := range s.all() {
		r.RecordHealth(at, 0, c.Endpoint, c.Up, c.Weight)
	}
}

func (s *Sim) all() []*skew.Recorder {
	if s.Single != nil {
		return append(append([]*skew.Recorder(nil), s.Recorders...), s.Single)
	}
	return s.Recorders
}

// Truth returns the true lookups per endpoint over [from, to) (whole
// windows) and their shares.
func (s *Sim) Truth(from, to int64) (lookups, share []float64) {
	lookups = make([]float64, len(s.cfg.Service.Endpoints))
	for w := from / s.window; w*s.window < to; w++ {
		for j, v := range s.truth[w] {
			lookups[j] += v
		}
	}
	var total float64
	for _, v := range lookups {
		total += v
	}
	share = make([]float64, len(lookups))
	for j, v := range lookups {
		if total > 0 {
			share[j] = v / total
		}
	}
	return lookups, share
}

// Report is node 0's cluster-wide report at now, with every other node's
// export encoded and decoded as peers would receive it.
func (s *Sim) Report(window time.Duration, now int64) (*skew.Report, error) {
	peers, err := s.Peers(now)
	if err != nil {
		return nil, err
	}
	return s.Recorders[0].Report(s.cfg.Service.Name, window, now, peers)
}

// ReportAll has every node build its cluster-wide report at now, each with
// the others' exports (as every node of a cluster does for its gauges, and
// which lets each adopt the identities the others hold), and returns node
// 0's.
func (s *Sim) ReportAll(window time.Duration, now int64) (*skew.Report, error) {
	all := make([]*skew.Export, len(s.Recorders))
	for i, r := range s.Recorders {
		b, err := r.Export(now)
		if err != nil {
			return nil, err
		}
		if all[i], err = skew.DecodeExport(b); err != nil {
			return nil, err
		}
	}
	var first *skew.Report
	for i, r := range s.Recorders {
		peers := append(append([]*skew.Export(nil), all[:i]...), all[i+1:]...)
		rep, err := r.Report(s.cfg.Service.Name, window, now, peers)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			first = rep
		}
	}
	return first, nil
}

// Peers returns nodes 1..n's exports at now, decoded.
func (s *Sim) Peers(now int64) ([]*skew.Export, error) {
	var peers []*skew.Export
	for _, r := range s.Recorders[1:] {
		b, err := r.Export(now)
		if err != nil {
			return nil, err
		}
		x, err := skew.DecodeExport(b)
		if err != nil {
			return nil, err
		}
		peers = append(peers, x)
	}
	return peers, nil
}

// Population returns the scenario's population.
func (s *Sim) Population() *Population { return s.pop }

// TVD is the total variation distance ½Σ|a−b|.
func TVD(a, b []float64) float64 {
	var d float64
	for i := range a {
		d += math.Abs(a[i] - b[i])
	}
	return d / 2
}
