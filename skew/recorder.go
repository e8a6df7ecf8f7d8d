package skew

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultWindow is the tumbling window when Config.Window is zero.
const DefaultWindow = 5 * time.Minute

// ringWindows is how many windows the recorder keeps: the open one and the
// twelve before it, so a one-hour report always has its full hour.
const ringWindows = 13

// maxServices bounds the services one recorder tracks (indexes are 16-bit
// on the hand-off).
const maxServices = 4096

// Config says what to record. cmd/meridian builds it from config.Config.
type Config struct {
	Node     string        // this node's name (goes into exports)
	TopK     int           // identities tracked (config skew.top_k)
	Window   time.Duration // tumbling window; 0: DefaultWindow. The ring keeps 13.
	Services []Service
	// Logger receives transitions (ring overflow, floods); nil: discarded.
	Logger *slog.Logger
}

// Service is a steered name whose answers are recorded.
type Service struct {
	Name      string // FQDN, e.g. "api.gslb.example.test."
	Policy    string // weighted | latency | failover | multivalue
	TTL       uint32
	Endpoints []Endpoint
}

// Endpoint is one answer of a service. Weight is the configured weight,
// Capacity the share the report holds it to under the latency policy
// (config's capacity, default its weight), Priority the failover priority
// (lower first).
type Endpoint struct {
	Name, Region     string
	Weight, Capacity float64
	Priority         int
}

// Answer is one response actually sent for a steered service name.
type Answer struct {
	Service   int          // index into Config.Services
	Source    netip.Addr   // the resolver's address (the packet source)
	ECS       netip.Prefix // the client subnet at the scope returned; zero when none
	Endpoints uint64       // bitmask of answered endpoint indexes
	TTL       uint32       // TTL sent
	At        int64        // unix nanoseconds
}

// Stats are the recorder's own counters since New.
type Stats struct {
	Dropped uint64 // answers lost because a hand-off ring was full
	Invalid uint64 // answers naming an unknown service or endpoint
	Late    uint64 // answers older than the ring
	Stale   uint64 // answers and health events recorded under a configuration two reloads old
	Tracked int    // identities in the top-k now
}

// compiled is a validated Config with what the answer path needs.
type compiled struct {
	cfg    Config
	window int64 // nanoseconds
	gen    uint16
	salts  []uint64
	byName map[string]int
	// prev is the configuration before this one and remap its indexes in
	// this one, for answers recorded across a reload.
	prev  *compiled
	remap []svcMap
}

// svcMap maps one service of an older configuration into a newer one:
// svc is the new index (-1: gone), ends the new endpoint index per old one.
type svcMap struct {
	svc  int
	ends []int
}

// Recorder records the answers a node sends and builds skew reports. Record
// is safe for concurrent use from any number of goroutines and never blocks;
// the other methods are safe for concurrent use and may block briefly.
type Recorder struct {
	cfg     atomic.Pointer[compiled]
	rings   [ringShards]*ring
	kick    chan struct{}
	dropped atomic.Uint64
	invalid atomic.Uint64
	log     *slog.Logger
	full    atomic.Bool // a ring overflowed since the last drain (for logging)

	healthMu sync.Mutex
	healthQ  []queuedHealth

	mu sync.Mutex // guards st and the rings' consumer side
	st *state

	prof *profiles // long-term demand profiles, built by reports
}

// New validates cfg and returns a recorder. It starts nothing: Run drains
// the hand-off in the background (Export and Report also drain it).
func New(cfg Config) (*Recorder, error) {
	c, err := compile(cfg, nil)
	if err != nil {
		return nil, err
	}
	r := &Recorder{kick: make(chan struct{}, 1), log: cfg.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for i := range r.rings {
		r.rings[i] = newRing()
	}
	r.cfg.Store(c)
	r.st = newState(c)
	r.prof = newProfiles(2*c.cfg.TopK + 1024)
	return r, nil
}

func compile(cfg Config, prev *compiled) (*compiled, error) {
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	var errs []error
	if cfg.TopK < 1 || cfg.TopK > 10_000_000 {
		errs = append(errs, fmt.Errorf("top_k %d is outside 1..10000000", cfg.TopK))
	}
	if cfg.Window < time.Second || cfg.Window > 2*time.Hour {
		errs = append(errs, fmt.Errorf("window %s is outside 1s..2h", cfg.Window))
	}
	if len(cfg.Node) > maxName {
		errs = append(errs, fmt.Errorf("node name is %d bytes, at most %d", len(cfg.Node), maxName))
	}
	if len(cfg.Services) > maxServices {
		errs = append(errs, fmt.Errorf("%d services, at most %d", len(cfg.Services), maxServices))
	}
	c := &compiled{cfg: cfg, window: int64(cfg.Window), byName: map[string]int{}}
	for i, s := range cfg.Services {
		if err := checkService(s); err != nil {
			errs = append(errs, fmt.Errorf("service %d (%q): %w", i, s.Name, err))
			continue
		}
		if _, dup := c.byName[s.Name]; dup {
			errs = append(errs, fmt.Errorf("service %d: %q is listed twice", i, s.Name))
		}
		c.byName[s.Name] = i
		c.salts = append(c.salts, serviceSalt(s.Name))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("skew: config: %w", errors.Join(errs...))
	}
	if prev != nil {
		c.gen = prev.gen + 1
		c.prev = prev
		prev.prev = nil // keep one generation back, no more
		c.remap = make([]svcMap, len(prev.cfg.Services))
		for i, s := range prev.cfg.Services {
			c.remap[i] = mapService(s, c)
		}
	}
	return c, nil
}

// Bounds on names, shared with the export format.
const (
	maxName      = 255
	maxEndpoints = 64
)

func checkService(s Service) error {
	switch {
	case s.Name == "" || len(s.Name) > maxName:
		return fmt.Errorf("name must be 1..%d bytes", maxName)
	case len(s.Endpoints) == 0 || len(s.Endpoints) > maxEndpoints:
		return fmt.Errorf("has %d endpoints: 1..%d", len(s.Endpoints), maxEndpoints)
	}
	seen := map[string]bool{}
	for j, e := range s.Endpoints {
		switch {
		case e.Name == "" || len(e.Name) > maxName || len(e.Region) > maxName:
			return fmt.Errorf("endpoint %d: name must be 1..%d bytes, region at most %d", j, maxName, maxName)
		case seen[e.Name]:
			return fmt.Errorf("endpoint %q is listed twice", e.Name)
		case e.Weight < 0 || math.IsNaN(e.Weight) || math.IsInf(e.Weight, 0):
			return fmt.Errorf("endpoint %q: weight %v is not a non-negative number", e.Name, e.Weight)
		case e.Capacity < 0 || math.IsNaN(e.Capacity) || math.IsInf(e.Capacity, 0):
			return fmt.Errorf("endpoint %q: capacity %v is not a non-negative number", e.Name, e.Capacity)
		}
		seen[e.Name] = true
	}
	return nil
}

// mapService maps service s of an older configuration into c.
func mapService(s Service, c *compiled) svcMap {
	i, ok := c.byName[s.Name]
	if !ok {
		return svcMap{svc: -1}
	}
	return svcMap{svc: i, ends: mapEndpoints(s.Endpoints, c.cfg.Services[i].Endpoints)}
}

// mapEndpoints returns, per endpoint of from, its index in to or -1.
func mapEndpoints(from, to []Endpoint) []int {
	m := make([]int, len(from))
	for i, e := range from {
		m[i] = -1
		for j, f := range to {
			if f.Name == e.Name {
				m[i] = j
				break
			}
		}
	}
	return m
}

// remapMask moves the endpoint bits of mask through m; bits of endpoints
// that are gone are dropped.
func remapMask(mask uint64, m []int) uint64 {
	var out uint64
	for mask != 0 {
		i := bits.TrailingZeros64(mask)
		mask &= mask - 1
		if i < len(m) && m[i] >= 0 {
			out |= 1 << m[i]
		}
	}
	return out
}

// Record notes one answer sent. It is the answer path's call: it never
// blocks, locks or allocates; when the hand-off is full the answer is
// dropped and counted.
func (r *Recorder) Record(a Answer) {
	c := r.cfg.Load()
	if a.Service < 0 || a.Service >= len(c.salts) || a.Endpoints == 0 {
		r.invalid.Add(1)
		return
	}
	src, ecs := a.Source.Unmap(), normECS(a.ECS)
	var x rec
	x.key = identityKey(src, c.salts[a.Service], ecs)
	x.at, x.mask, x.ttl = a.At, a.Endpoints, a.TTL
	x.svc, x.gen = uint16(a.Service), c.gen
	x.src = src.As16()
	if src.Is4() {
		x.flags |= recSrc4
	}
	if ecs.IsValid() {
		x.ecs = ecs.Addr().As16()
		x.flags |= recECS
		x.bits = uint8(ecs.Bits())
		if ecs.Addr().Is4() {
			x.flags |= recECS4
		}
	}
	q := r.rings[x.key>>(64-ringShardBits)]
	if !q.push(&x) {
		r.dropped.Add(1)
		r.full.Store(true)
		return
	}
	if q.backlog() >= ringSize/2 {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// normECS returns p masked, with an IPv4-mapped subnet as IPv4.
func normECS(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return netip.Prefix{}
	}
	if a := p.Addr(); a.Is4In6() {
		p = netip.PrefixFrom(a.Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked()
}

// RecordAnswer records an answer sent now. Its signature is the resolver's
// AnswerRecorder, so a *Recorder can be handed to the resolver as is.
func (r *Recorder) RecordAnswer(service int, source netip.Addr, ecs netip.Prefix, endpoints uint64, ttl uint32) {
	r.Record(Answer{Service: service, Source: source, ECS: ecs, Endpoints: endpoints, TTL: ttl, At: time.Now().UnixNano()})
}

// HealthEvent is one point of the health/weight timeline: from At on, the
// endpoint is up or not, with the weight it is answered by.
type HealthEvent struct {
	At       int64 // unix nanoseconds
	Service  int   // index into the configuration's services
	Endpoint int   // index into the service's endpoints
	Up       bool
	Weight   float64
}

// maxHealthQueue bounds the health events waiting for the next drain.
const maxHealthQueue = 4096

// RecordHealth notes that from time at the endpoint is up or down with the
// given weight (0: drained). Calls in between drains beyond 4096 are
// dropped and counted as invalid.
func (r *Recorder) RecordHealth(at int64, service, endpoint int, up bool, weight float64) {
	c := r.cfg.Load()
	if service < 0 || service >= len(c.cfg.Services) || endpoint < 0 || endpoint >= len(c.cfg.Services[service].Endpoints) ||
		weight < 0 || math.IsNaN(weight) || math.IsInf(weight, 0) {
		r.invalid.Add(1)
		return
	}
	r.healthMu.Lock()
	defer r.healthMu.Unlock()
	if len(r.healthQ) >= maxHealthQueue {
		r.invalid.Add(1)
		return
	}
	r.healthQ = append(r.healthQ, queuedHealth{HealthEvent{At: at, Service: service, Endpoint: endpoint, Up: up, Weight: weight}, c.gen})
}

// queuedHealth is a health event waiting for the drain, with the
// configuration generation its indexes refer to.
type queuedHealth struct {
	HealthEvent
	gen uint16
}

// translateHealth moves q into c's indexes (see translate).
func translateHealth(q queuedHealth, c *compiled) (HealthEvent, bool) {
	h := q.HealthEvent
	if q.gen == c.gen {
		return h, true
	}
	if c.prev == nil || q.gen != c.prev.gen || h.Service >= len(c.remap) {
		return h, false
	}
	m := c.remap[h.Service]
	if m.svc < 0 || h.Endpoint >= len(m.ends) || m.ends[h.Endpoint] < 0 {
		return h, false
	}
	h.Service, h.Endpoint = m.svc, m.ends[h.Endpoint]
	return h, true
}

// drainInterval is how often Run empties the hand-off when no ring is half
// full.
const drainInterval = 10 * time.Millisecond

// Run drains the hand-off until ctx is done; it returns nil then.
func (r *Recorder) Run(ctx context.Context) error {
	t := time.NewTicker(drainInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			r.drainLocked()
			r.mu.Unlock()
			return nil
		case <-t.C:
		case <-r.kick:
		}
		r.mu.Lock()
		r.drainLocked()
		r.mu.Unlock()
		if r.full.Swap(false) {
			r.log.Warn("skew: hand-off ring was full; answers were dropped", "component", "skew", "dropped_total", r.dropped.Load())
		}
	}
}

// drainLocked moves every waiting record and health event into the state.
// r.mu must be held.
func (r *Recorder) drainLocked() {
	c := r.cfg.Load()
	r.healthMu.Lock()
	hq := r.healthQ
	r.healthQ = nil
	r.healthMu.Unlock()
	for _, q := range hq {
		if h, ok := translateHealth(q, c); ok {
			r.st.addHealth(h)
		} else {
			r.st.stale++
		}
	}
	var x rec
	for _, q := range r.rings {
		for q.pop(&x) {
			if !translate(&x, c) {
				r.st.stale++
				continue
			}
			if !r.st.record(&x, c) {
				r.invalid.Add(1)
			}
		}
	}
}

// Flush drains the hand-off now, as Run does continuously: for callers
// that record without running Run (simulations, tests).
func (r *Recorder) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked()
}

// translate moves x into c's index space; false when it was recorded under
// a configuration older than c's predecessor, or its service is gone.
func translate(x *rec, c *compiled) bool {
	if x.gen == c.gen {
		return true
	}
	if c.prev == nil || x.gen != c.prev.gen || int(x.svc) >= len(c.remap) {
		return false
	}
	m := c.remap[x.svc]
	if m.svc < 0 {
		return false
	}
	x.svc, x.mask, x.gen = uint16(m.svc), remapMask(x.mask, m.ends), c.gen
	return x.mask != 0
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked()
	return Stats{
		Dropped: r.dropped.Load(), Invalid: r.invalid.Load(),
		Late: r.st.late, Stale: r.st.stale, Tracked: len(r.st.top.e),
	}
}

// Holds reports whether the identity (source, service index, ECS subnet) is
// in the top-k now.
func (r *Recorder) Holds(source netip.Addr, service int, ecs netip.Prefix) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked()
	c := r.cfg.Load()
	if service < 0 || service >= len(c.salts) {
		return false
	}
	return r.st.top.find(identityKey(source.Unmap(), c.salts[service], ecs)) >= 0
}

// Update applies a new configuration (a reload). Services are matched by
// name and endpoints by name within them: what still matches keeps its
// history, what is gone is dropped, what is new starts empty. A new window
// length drops all history (no window matches). A bad cfg changes nothing.
func (r *Recorder) Update(cfg Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cfg.Load()
	c, err := compile(cfg, old)
	if err != nil {
		return err
	}
	r.drainLocked()
	if c.window != old.window {
		r.st = newState(c)
	} else {
		r.st.remap(old, c)
	}
	if cfg.Logger != nil {
		r.log = cfg.Logger
	}
	r.cfg.Store(c)
	return nil
}

// randSeed returns a random 64-bit seed for the doorkeeper's hashes, so the
// cells a source lands in cannot be chosen from outside.
func randSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
