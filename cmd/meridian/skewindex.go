package main

// The recorder's indexes across reloads.
//
// The resolver hands RecordAnswer the service and endpoint indexes of the
// configuration that answered, and the recorder reads each answer in the
// configuration it holds when the answer reaches it (Recorder.Record reads
// it then). A reload swaps both, and a table still writing an answer can
// meet the recorder on either side of its swap: with indexes that change,
// some answers would be read in the wrong configuration, and no order of
// the two swaps avoids it (the recorder does not say which configuration
// an answer met).
//
// So the recorder never sees indexes change. It is given a registry of the
// services and endpoints this node has answered since it started, in the
// order they first appeared: a reload appends what is new and keeps what
// it removed (at weight 0, so out of the intended shares, and hidden from
// reports once it has no answers in the window). Each configuration's
// table gets a skewBinding that maps its own indexes into the registry's,
// which are valid in every registry since (append-only), so an answer means
// the same endpoint whichever registry the recorder holds when it arrives.
// The recorder is updated before the resolver, so a new table's answers
// always find their appended entries.
//
// The registry is bounded by the recorder's limits (4096 services, 64
// endpoints each). A reload that would go past them compacts it to the new
// configuration: indexes change, the history of everything removed goes,
// and bindings of earlier configurations stop recording (their answers are
// counted in meridian_skew_reload_lost_answers_total). Only then can an
// answer that an earlier table was writing during the swap be read in the
// new indexes (a window of nanoseconds); a skew API with per-configuration
// recorders would close it (see the notes on issue 6).

import (
	"math/bits"
	"net/netip"
	"slices"
	"sync/atomic"

	"meridian/config"
	"meridian/skew"
)

// Recorder limits the registry stays within.
const (
	skewMaxServices  = 4096
	skewMaxEndpoints = 64
)

// skewRegistry is every service and endpoint this node has answered since
// start (or since the last compaction), in the order they first appeared.
// It is immutable: with returns a new one.
type skewRegistry struct {
	services []skew.Service
	svcIndex map[string]int
	epIndex  []map[string]int // per service: endpoint name → position
}

// newSkewRegistry is the registry of cfg alone.
func newSkewRegistry(cfg *config.Config) *skewRegistry {
	r := &skewRegistry{svcIndex: map[string]int{}}
	r.merge(cfg)
	return r
}

// with returns the registry extended by cfg: cfg's services and endpoints
// take their current policy, TTL, region, weight, capacity and priority,
// new ones are appended, and endpoints cfg no longer has keep their place
// at weight 0. When that would pass the recorder's limits it returns the
// registry of cfg alone and compacted = true (cfg alone may still pass
// them: the recorder then refuses it).
func (r *skewRegistry) with(cfg *config.Config) (next *skewRegistry, compacted bool) {
	next = &skewRegistry{
		services: make([]skew.Service, len(r.services)),
		svcIndex: make(map[string]int, len(r.svcIndex)),
		epIndex:  make([]map[string]int, len(r.epIndex)),
	}
	for i, s := range r.services {
		s.Endpoints = slices.Clone(s.Endpoints)
		next.services[i] = s
		next.epIndex[i] = make(map[string]int, len(r.epIndex[i]))
		for k, v := range r.epIndex[i] {
			next.epIndex[i][k] = v
		}
	}
	for k, v := range r.svcIndex {
		next.svcIndex[k] = v
	}
	if !next.merge(cfg) {
		return newSkewRegistry(cfg), true
	}
	return next, false
}

// merge adds cfg to r in place; false when r then passes the recorder's
// limits (the recorder refuses such a registry, with the reason).
func (r *skewRegistry) merge(cfg *config.Config) bool {
	ok := true
	for _, svc := range cfg.Services {
		i, seen := r.svcIndex[svc.Name]
		if !seen {
			i = len(r.services)
			r.svcIndex[svc.Name] = i
			r.services = append(r.services, skew.Service{Name: svc.Name})
			r.epIndex = append(r.epIndex, map[string]int{})
		}
		rs := &r.services[i]
		rs.Policy, rs.TTL = svc.Policy, svc.TTL
		for j := range rs.Endpoints {
			rs.Endpoints[j].Weight, rs.Endpoints[j].Capacity = 0, 0 // gone unless cfg has it
		}
		for _, e := range svc.Endpoints {
			j, seen := r.epIndex[i][e.Name]
			if !seen {
				j = len(rs.Endpoints)
				r.epIndex[i][e.Name] = j
				rs.Endpoints = append(rs.Endpoints, skew.Endpoint{})
			}
			rs.Endpoints[j] = skew.Endpoint{Name: e.Name, Region: e.Region,
				Weight: float64(e.EffectiveWeight()), Capacity: e.EffectiveCapacity(), Priority: e.Priority}
		}
		ok = ok && len(rs.Endpoints) <= skewMaxEndpoints
	}
	return ok && len(r.services) <= skewMaxServices
}

// config is the recorder's configuration of the registry.
func (r *skewRegistry) config(node string, topK int) skew.Config {
	return skew.Config{Node: node, TopK: topK, Services: slices.Clone(r.services)}
}

// endpoint returns the registry's indexes of an endpoint of a service it
// holds.
func (r *skewRegistry) endpoint(service, endpoint string) (int, int) {
	i := r.svcIndex[service]
	return i, r.epIndex[i][endpoint]
}

// lookup returns the registry's indexes of an endpoint, if it holds it.
func (r *skewRegistry) lookup(service, endpoint string) (int, int, bool) {
	i, ok := r.svcIndex[service]
	if !ok {
		return 0, 0, false
	}
	j, ok := r.epIndex[i][endpoint]
	return i, j, ok
}

// skewBinding is the resolver's AnswerRecorder for one configuration: it
// maps the configuration's indexes into the registry's. RecordAnswer does
// not block, lock or allocate.
type skewBinding struct {
	rec   *skew.Recorder
	epoch uint64         // the registry's compaction epoch the maps are for
	cur   *atomic.Uint64 // the recorder's epoch now
	lost  *atomic.Uint64
	svc   []int   // per service of the configuration: its registry index
	ends  [][]int // per service: each endpoint's registry index
	same  []bool  // per service: the endpoints' indexes are the registry's
}

// newSkewBinding maps cfg's services and endpoints into reg (which holds
// them all).
func newSkewBinding(rec *skew.Recorder, reg *skewRegistry, cfg *config.Config, epoch uint64, cur, lost *atomic.Uint64) *skewBinding {
	b := &skewBinding{rec: rec, epoch: epoch, cur: cur, lost: lost,
		svc: make([]int, len(cfg.Services)), ends: make([][]int, len(cfg.Services)), same: make([]bool, len(cfg.Services))}
	for i, svc := range cfg.Services {
		b.svc[i] = reg.svcIndex[svc.Name]
		b.ends[i] = make([]int, len(svc.Endpoints))
		b.same[i] = true
		for j, e := range svc.Endpoints {
			b.ends[i][j] = reg.epIndex[b.svc[i]][e.Name]
			b.same[i] = b.same[i] && b.ends[i][j] == j
		}
	}
	return b
}

// RecordAnswer implements resolver.AnswerRecorder.
func (b *skewBinding) RecordAnswer(service int, source netip.Addr, ecs netip.Prefix, endpoints uint64, ttl uint32) {
	if service < 0 || service >= len(b.svc) || b.cur.Load() != b.epoch {
		b.lost.Add(1)
		return
	}
	mask := endpoints
	if !b.same[service] {
		mask = 0
		ends := b.ends[service]
		for rest := endpoints; rest != 0; rest &= rest - 1 {
			if i := bits.TrailingZeros64(rest); i < len(ends) {
				mask |= 1 << ends[i]
			}
		}
	}
	b.rec.RecordAnswer(b.svc[service], source, ecs, mask, ttl)
}
