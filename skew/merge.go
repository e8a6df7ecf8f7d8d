package skew

import (
	"cmp"
	"net/netip"
	"slices"
)

// The cluster-wide view of one service: every node's windows summed into
// this node's endpoint indexes, and every identity's answers from every
// node merged in time order (SKEW.md "Across nodes": gaps are computed on
// the merged sequence, since a resolver spreads its queries over the NS
// set and per-node gaps would look like clamping).

// merged is one service's data over the ring, from all contributing nodes.
type merged struct {
	svc    Service
	window int64 // nanoseconds
	first  int64 // number of the ring's oldest window
	wins   []mwin
	ids    []*ident
	health []HealthEvent // this node's indexes, time order
	nodes  []string
	// node counters, summed
	dropped, late, invalid uint64
	truncated              []string // nodes whose export left sequences out
}

// mwin is one window summed over nodes.
type mwin struct {
	start                                          int64
	total, unverTotal, admissions, evictions, drop uint64
	answers, answerSeconds, ecs, unverified        []uint64
	idents, subnets                                []HLL
	nodes                                          []string
}

// idEvent is one answer to an identity, in this node's endpoint indexes.
type idEvent struct {
	at    int64
	mask  uint64
	ttl   uint32
	first bool
}

// mergeExports builds the view of service svc for the ring ending with the
// window holding now-1, from exports (this node's first).
func mergeExports(svc Service, window, now int64, exports []*Export) *merged {
	// The ring is the windows every contributing node still holds: a node
	// that has moved on to a new window has dropped the oldest one, and
	// merging that window from the others alone would leave holes in the
	// sequences (gaps that look like clamping).
	last := floorDiv(now-1, window)
	first := last - ringWindows + 1
	for _, x := range exports {
		if int64(x.Window) == window && x.RingStart != 0 {
			first = max(first, floorDiv(x.RingStart, window))
		}
	}
	m := &merged{svc: svc, window: window, first: first}
	m.wins = make([]mwin, max(last-first+1, 0))
	n := len(svc.Endpoints)
	for i := range m.wins {
		w := &m.wins[i]
		w.start = (m.first + int64(i)) * window
		w.answers, w.answerSeconds = make([]uint64, n), make([]uint64, n)
		w.ecs, w.unverified = make([]uint64, n), make([]uint64, n)
		w.idents, w.subnets = make([]HLL, n), make([]HLL, n)
	}
	byKey := map[uint64]*ident{}
	for _, x := range exports {
		si := slices.IndexFunc(x.Services, func(s Service) bool { return s.Name == svc.Name })
		if si < 0 || int64(x.Window) != window {
			continue
		}
		ends := mapEndpoints(x.Services[si].Endpoints, svc.Endpoints)
		contributed := false
		for _, xw := range x.Windows {
			idx := floorDiv(xw.Start, window) - m.first
			if idx < 0 || idx >= int64(len(m.wins)) || xw.Start > now {
				continue
			}
			sw := &xw.Services[si]
			if sw.empty() {
				continue
			}
			contributed = true
			m.addWindow(&m.wins[idx], sw, ends, x.Node)
			for _, s := range sw.Sequences {
				m.addSequence(byKey, s, ends)
			}
		}
		for _, h := range x.Health {
			if h.Service == si && h.Endpoint < len(ends) && ends[h.Endpoint] >= 0 {
				h.Service, h.Endpoint = 0, ends[h.Endpoint]
				m.health = append(m.health, h)
			}
		}
		if contributed {
			m.nodes = append(m.nodes, x.Node)
			m.dropped += x.Dropped
			m.late += x.Late
			m.invalid += x.Invalid
			if x.Truncated {
				m.truncated = append(m.truncated, x.Node)
			}
		}
	}
	slices.SortStableFunc(m.health, func(a, b HealthEvent) int { return cmp.Compare(a.At, b.At) })
	for _, id := range byKey {
		slices.SortStableFunc(id.ev, func(a, b idEvent) int { return cmp.Compare(a.at, b.at) })
		m.ids = append(m.ids, id)
	}
	slices.SortFunc(m.ids, func(a, b *ident) int { return cmp.Compare(a.key, b.key) })
	return m
}

func (m *merged) addWindow(w *mwin, sw *ServiceWindow, ends []int, node string) {
	w.total += sw.Total
	w.unverTotal += sw.UnverifiedTotal
	w.admissions += sw.Admissions
	w.evictions += sw.Evictions
	w.drop += sw.EventsDropped
	for i, j := range ends {
		if j < 0 || i >= len(sw.Answers) {
			continue
		}
		w.answers[j] += sw.Answers[i]
		w.answerSeconds[j] += sw.AnswerSeconds[i]
		w.ecs[j] += sw.ECSAnswers[i]
		w.unverified[j] += sw.UnverifiedAnswers[i]
		w.idents[j].Merge(&sw.Identities[i])
		w.subnets[j].Merge(&sw.Subnets[i])
	}
	w.nodes = append(w.nodes, node)
}

func (m *merged) addSequence(byKey map[uint64]*ident, s Sequence, ends []int) {
	id := byKey[s.key]
	if id == nil {
		id = &ident{key: s.key, src: s.Source, ecs: s.ECS}
		byKey[s.key] = id
	}
	for _, e := range s.Events {
		mask := remapMask(e.Endpoints, ends)
		if mask == 0 {
			continue
		}
		id.ev = append(id.ev, idEvent{at: e.At, mask: mask, ttl: e.TTL, first: e.First})
	}
}

// identity returns the display form of an identity.
func identityString(src netip.Addr, ecs netip.Prefix) string {
	if ecs.IsValid() {
		return src.String() + " ecs " + ecs.String()
	}
	return src.String()
}
