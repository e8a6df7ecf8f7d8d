package skew

import (
	"math"
	"math/bits"
	"net/netip"
	"slices"
)

// event is one logged answer to an identity held by the top-k.
type event struct {
	key  uint64
	ms   uint32 // milliseconds after the window start
	ttl  uint32 // TTL sent; the top bit marks the first answer after admission
	mask uint64
}

// firstFlag marks an event that opens an identity's log on this node (the
// answers before it were not logged here; exported as Event.First).
const firstFlag = 1 << 31

// svcWin is one service's share of a window.
type svcWin struct {
	total         uint64   // answers
	answers       []uint64 // per endpoint: answers that carried it
	answerSeconds []uint64 // per endpoint: Σ TTL sent
	ecs           []uint64 // per endpoint: answers to queries with ECS
	unverified    []uint64 // per endpoint: answers to identities not held
	unverTotal    uint64
	admissions    uint64
	evictions     uint64
	eventsDropped uint64 // answers to held identities not logged (budget)
	idents        []HLL  // per endpoint: distinct identities
	subnets       []HLL  // per endpoint: distinct ECS /24 (IPv4) or /48 (IPv6)
	events        []event
}

func newSvcWin(n int) *svcWin {
	return &svcWin{
		answers: make([]uint64, n), answerSeconds: make([]uint64, n), ecs: make([]uint64, n),
		unverified: make([]uint64, n), idents: make([]HLL, n), subnets: make([]HLL, n),
	}
}

// win is one tumbling window.
type win struct {
	idx    int64 // window number: start = idx·window
	svcs   []*svcWin
	events int // logged events, against the per-window budget
}

// meta is what the state remembers of a logged identity, for exports.
type meta struct {
	src   [16]byte
	ecs   [16]byte
	flags uint8
	bits  uint8
	last  int64 // newest window with an event of it
}

func (m meta) source() netip.Addr {
	if m.flags&recSrc4 != 0 {
		return netip.AddrFrom4([4]byte(m.src[12:]))
	}
	return netip.AddrFrom16(m.src)
}

func (m meta) subnet() netip.Prefix {
	if m.flags&recECS == 0 {
		return netip.Prefix{}
	}
	if m.flags&recECS4 != 0 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(m.ecs[12:])), int(m.bits)).Masked()
	}
	return netip.PrefixFrom(netip.AddrFrom16(m.ecs), int(m.bits)).Masked()
}

// state is everything the recorder holds; only the goroutine holding
// Recorder.mu touches it.
type state struct {
	window  int64 // nanoseconds
	cur     int64 // newest window number seen; valid when started
	started bool
	wins    [ringWindows]*win
	top     topK
	door    doorkeeper
	pend    pending
	metas   map[uint64]meta
	health  []HealthEvent
	budget  int // logged events per window
	metaMax int // identity metadata records
	decay   float64
	late    uint64
	stale   uint64
}

// newState returns an empty state for c.
//
// Memory bound, for k = TopK, whatever the number of distinct sources:
//
//   - doorkeeper: 4 sketches of 4 rows of w 2-byte counts, w = k rounded
//     up to a power of two (at least 1024);
//   - pending table: 2w slots of 40 bytes;
//   - top-k: k entries of 32 bytes and their index;
//   - event logs: per window at most 4k+4096 events of 24 bytes (four
//     answers per held identity per window on average; beyond, answers are
//     counted as not logged and the confidence says so), 13 windows;
//   - identity metadata: at most 2k+1024 records (beyond, answers of
//     identities without one are not logged and are counted as dropped);
//   - profiles (profile.go): at most 2k+1024;
//   - counters and sketches: 544 bytes per endpoint per window;
//   - the hand-off rings: 32·1024 records of 80 bytes, fixed.
//
// With k = 100 000 that is at most about 4 + 10 + 7 + 126 + 16 + 20 MB
// (≈ 185 MB, ≈ 1.9 KB per unit of top_k); a node under a flood of a
// million spoofed sources measured 19 MB (TestMemoryMillionSpoofedSources).
func newState(c *compiled) *state {
	k := c.cfg.TopK
	return &state{
		window:  c.window,
		top:     newTopK(k),
		door:    newDoorkeeper(max(1024, k), randSeed()),
		pend:    newPending(k),
		metas:   map[uint64]meta{},
		budget:  4*k + 4096,
		metaMax: 2*k + 1024,
		decay:   math.Exp2(-1 / float64(ringWindows-1)),
	}
}

// floorDiv is ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// windowFor returns the window numbered idx, rotating the ring forward when
// idx is newer than any seen; nil when idx is older than the ring.
func (s *state) windowFor(idx int64, c *compiled) *win {
	if !s.started {
		s.started, s.cur = true, idx
	}
	if idx > s.cur {
		s.rotate(idx)
	}
	if idx <= s.cur-ringWindows {
		return nil
	}
	slot := &s.wins[((idx%ringWindows)+ringWindows)%ringWindows]
	if *slot == nil || (*slot).idx != idx {
		*slot = s.newWin(idx, c, *slot)
	}
	return *slot
}

// newWin makes window idx, reusing old's memory.
func (s *state) newWin(idx int64, c *compiled, old *win) *win {
	w := &win{idx: idx, svcs: make([]*svcWin, len(c.cfg.Services))}
	for i, svc := range c.cfg.Services {
		w.svcs[i] = newSvcWin(len(svc.Endpoints))
		if old != nil && i < len(old.svcs) && old.svcs[i] != nil {
			w.svcs[i].events = old.svcs[i].events[:0]
		}
	}
	return w
}

// rotate advances the ring to window idx: the doorkeeper moves on, the
// top-k decays, and metadata of identities with no event left is dropped.
func (s *state) rotate(idx int64) {
	skipped := idx - s.cur
	s.door.advance(s.cur, idx)
	f := math.Pow(s.decay, float64(min(skipped, 64)))
	s.top.decay(f)
	s.cur = idx
	oldest := idx - ringWindows + 1
	for k, m := range s.metas {
		if m.last < oldest {
			delete(s.metas, k)
		}
	}
	s.pruneHealth(oldest * s.window)
}

// record applies one answer; false when it names an endpoint the service
// does not have.
func (s *state) record(x *rec, c *compiled) bool {
	svc := c.cfg.Services[x.svc]
	n := len(svc.Endpoints)
	if n < 64 && x.mask>>n != 0 {
		return false
	}
	idx := floorDiv(x.at, s.window)
	w := s.windowFor(idx, c)
	if w == nil {
		s.late++
		return true
	}
	sw := w.svcs[x.svc]
	sw.total++
	ecs := x.flags&recECS != 0
	var subnet uint64
	if ecs {
		subnet = subnetHash(x)
	}
	for m := x.mask; m != 0; m &= m - 1 {
		e := bits.TrailingZeros64(m)
		sw.answers[e]++
		sw.answerSeconds[e] += uint64(x.ttl)
		sw.idents[e].add(x.key)
		if ecs {
			sw.ecs[e]++
			sw.subnets[e].add(subnet)
		}
	}
	if i := s.top.find(x.key); i >= 0 {
		flag := uint32(0)
		if s.top.e[i].fresh {
			s.top.e[i].fresh, flag = false, firstFlag
		}
		s.top.add(i, float64(x.ttl))
		s.log(w, sw, x, flag)
		return true
	}
	if !s.admit(x) {
		sw.unverTotal++
		for m := x.mask; m != 0; m &= m - 1 {
			sw.unverified[bits.TrailingZeros64(m)]++
		}
		s.pend.put(x)
		return true
	}
	sw.admissions++
	if _, evicted := s.top.admit(x.key, int32(x.svc), float64(x.ttl)); evicted {
		sw.evictions++
	}
	// The sighting that earned the place is logged too, and opens the log.
	if p, ok := s.pend.take(x); ok {
		if pw := s.windowFor(floorDiv(p.at, s.window), c); pw != nil {
			s.log(pw, pw.svcs[x.svc], &p, firstFlag)
			s.log(w, sw, x, 0)
			return true
		}
	}
	s.log(w, sw, x, firstFlag)
	return true
}

// admit is SKEW.md's admission rule: an identity enters the top-k when it
// has been seen before (the doorkeeper sketch) and its first sighting, as
// the pending table holds it exactly, was at least 0.5τ and at most the
// doorkeeper's horizon earlier. A spoofed one-shot source never matches a
// pending key; a cache whose pending slot was taken by others (a flood)
// tries again at its next answers.
func (s *state) admit(x *rec) bool {
	seen := s.door.sight(x.key)
	first := s.pend.firstSeen(x.key)
	age := x.at - first
	return seen && first != 0 && age >= int64(x.ttl)*5e8 && age <= doorHorizon*s.window
}

// pending remembers, for identities not held, the time of their first
// unlogged sighting and their last one, in a two-way set-associative table:
// a new identity takes the pair's older slot. It holds the exact key the
// admission rule needs, and lets admission log the sighting before it.
// Under a flood of random sources slots turn over within moments, so a
// cache not yet held waits for the flood to pass; those already held are
// not affected.
type pending struct {
	slots []pendingSlot
	mask  uint64
}

type pendingSlot struct {
	key   uint64
	first int64 // unix nanoseconds of the first sighting
	last  int64 // and of the last
	mask  uint64
	ttl   uint32
}

func newPending(k int) pending {
	n := 2048
	for n < 2*k {
		n <<= 1
	}
	return pending{slots: make([]pendingSlot, n), mask: uint64(n - 1)}
}

// slot returns key's slot, or the one to replace, and whether it is key's.
func (p *pending) slot(key uint64) (*pendingSlot, bool) {
	i := key & p.mask
	a, b := &p.slots[i], &p.slots[i^1]
	switch {
	case a.key == key && a.first != 0:
		return a, true
	case b.key == key && b.first != 0:
		return b, true
	case a.last <= b.last:
		return a, false
	}
	return b, false
}

func (p *pending) put(x *rec) {
	s, ok := p.slot(x.key)
	if !ok {
		*s = pendingSlot{key: x.key, first: x.at}
	}
	s.last, s.mask, s.ttl = x.at, x.mask, x.ttl
}

// firstSeen returns key's first pending sighting, or 0.
func (p *pending) firstSeen(key uint64) int64 {
	if s, ok := p.slot(key); ok {
		return s.first
	}
	return 0
}

// take returns (as a record of x's identity) and clears x's last pending
// sighting, if it is earlier than x.
func (p *pending) take(x *rec) (rec, bool) {
	s, ok := p.slot(x.key)
	if !ok || s.last >= x.at {
		return rec{}, false
	}
	r := *x
	r.at, r.mask, r.ttl = s.last, s.mask, s.ttl
	*s = pendingSlot{}
	return r, true
}

// log appends x to the window's event log, within the budget.
func (s *state) log(w *win, sw *svcWin, x *rec, flag uint32) {
	if w.events >= s.budget {
		sw.eventsDropped++
		return
	}
	m, ok := s.metas[x.key]
	if !ok {
		if len(s.metas) >= s.metaMax {
			sw.eventsDropped++
			return
		}
		m = meta{src: x.src, ecs: x.ecs, flags: x.flags, bits: x.bits}
	}
	w.events++
	start := w.idx * s.window
	sw.events = append(sw.events, event{key: x.key, ms: uint32((x.at - start) / 1e6), ttl: min(x.ttl, firstFlag-1) | flag, mask: x.mask})
	m.last = max(m.last, w.idx)
	s.metas[x.key] = m
}

// subnetHash hashes the client /24 (IPv4) or /48 (IPv6) of x's ECS subnet.
func subnetHash(x *rec) uint64 {
	a := x.ecs
	if x.flags&recECS4 != 0 {
		a[15] = 0
	} else {
		clear(a[6:])
	}
	h := mix64(uint64(a[0])<<56 | uint64(a[1])<<48 | uint64(a[2])<<40 | uint64(a[3])<<32 | uint64(a[4])<<24 | uint64(a[5])<<16 | uint64(a[12])<<8 | uint64(a[13]))
	return mix64(h ^ uint64(a[14]) ^ 0x5ec)
}

// maxHealth bounds the timeline.
const maxHealth = 8192

// addHealth adds h to the timeline (kept in time order).
func (s *state) addHealth(h HealthEvent) {
	i, _ := slices.BinarySearchFunc(s.health, h.At, func(e HealthEvent, t int64) int {
		if e.At <= t {
			return -1
		}
		return 1
	})
	s.health = slices.Insert(s.health, i, h)
	if len(s.health) > maxHealth {
		s.health = s.health[len(s.health)-maxHealth:]
	}
}

// pruneHealth drops events before from, except the last one of each
// endpoint (its state when the ring starts).
func (s *state) pruneHealth(from int64) {
	type ep struct{ svc, end int }
	lastBefore := map[ep]int{}
	for i, h := range s.health {
		if h.At < from {
			lastBefore[ep{h.Service, h.Endpoint}] = i
		}
	}
	out := s.health[:0]
	for i, h := range s.health {
		if h.At >= from || lastBefore[ep{h.Service, h.Endpoint}] == i {
			out = append(out, h)
		}
	}
	s.health = out
}

// remap moves the state from configuration old to c (same window length).
func (s *state) remap(old, c *compiled) {
	m := c.remap
	for wi, w := range s.wins {
		if w == nil {
			continue
		}
		nw := &win{idx: w.idx, svcs: make([]*svcWin, len(c.cfg.Services))}
		for i, svc := range c.cfg.Services {
			nw.svcs[i] = newSvcWin(len(svc.Endpoints))
		}
		for i, sw := range w.svcs {
			if i >= len(m) || m[i].svc < 0 {
				continue
			}
			nw.svcs[m[i].svc] = remapSvcWin(sw, m[i].ends, len(c.cfg.Services[m[i].svc].Endpoints))
			nw.events += len(nw.svcs[m[i].svc].events)
		}
		s.wins[wi] = nw
	}
	for i := len(s.top.e) - 1; i >= 0; i-- {
		e := &s.top.e[i]
		if int(e.svc) >= len(m) || m[e.svc].svc < 0 {
			s.top.remove(i)
			continue
		}
		e.svc = int32(m[e.svc].svc)
	}
	if c.cfg.TopK != s.top.k {
		s.top.resize(c.cfg.TopK)
		s.door = newDoorkeeper(max(1024, c.cfg.TopK), randSeed())
		s.budget, s.metaMax = 4*c.cfg.TopK+4096, 2*c.cfg.TopK+1024
	}
	s.pend = newPending(c.cfg.TopK) // its indexes are the old configuration's
	hs := s.health[:0]
	for _, h := range s.health {
		if h.Service >= len(m) || m[h.Service].svc < 0 || m[h.Service].ends[h.Endpoint] < 0 {
			continue
		}
		h.Endpoint = m[h.Service].ends[h.Endpoint]
		h.Service = m[h.Service].svc
		hs = append(hs, h)
	}
	s.health = hs
}

// remapSvcWin moves one service's window through the endpoint map ends.
func remapSvcWin(sw *svcWin, ends []int, n int) *svcWin {
	out := newSvcWin(n)
	out.total, out.unverTotal = sw.total, sw.unverTotal
	out.admissions, out.evictions, out.eventsDropped = sw.admissions, sw.evictions, sw.eventsDropped
	for i, j := range ends {
		if j < 0 {
			continue
		}
		out.answers[j], out.answerSeconds[j], out.ecs[j] = sw.answers[i], sw.answerSeconds[i], sw.ecs[i]
		out.unverified[j], out.idents[j], out.subnets[j] = sw.unverified[i], sw.idents[i], sw.subnets[i]
	}
	for _, e := range sw.events {
		e.mask = remapMask(e.mask, ends)
		if e.mask != 0 {
			out.events = append(out.events, e)
		}
	}
	return out
}
