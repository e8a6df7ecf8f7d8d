package skew

// Long-term demand profiles (SKEW.md: "decayed long-term profiles").
//
// The ring keeps an hour of answer sequences, which gives a cache that asks
// every 30 s about 120 gaps and so λ̂ to about ±9 %. A heavy cache carries
// a large share, and under latency routing its whole share moves with that
// error. Before the oldest window leaves the ring, each report folds the
// gaps that end in it — computed from the merged sequences of all nodes, so
// never the misleading per-node gaps — into a per-identity profile: the
// count of long and short gaps, Σ g over the long ones, the excesses over
// the identity's refresh floor that that report kept (their count and
// sum), and the two smallest long gaps (for floors), all
// decayed with a time constant of profileTau. The report then uses the
// ring's gaps after the profile's horizon plus the profile: about four
// hours of evidence in place of one. Profiles live on the node that
// reports (they are derived from merged data, so every node builds the
// same ones); the least recently used go first when there are more than
// 2·top_k+1024. A node that reports less than once an hour folds less and
// falls back to the ring alone.

import (
	"math"
	"sync"
	"time"
)

// profileTau is the decay time constant of a profile.
const profileTau = 3 * time.Hour

// profileMinAge is how long the two smallest gaps are kept.
const profileMinAge = 6 * time.Hour

// profile is one identity's gap statistics from before the ring.
type profile struct {
	until   int64      // gaps ending before until are folded in
	at      int64      // time the counts were last decayed to
	n       float64    // long gaps (decayed)
	short   float64    // short gaps (decayed)
	sumG    float64    // Σ g over long gaps, seconds (decayed)
	d       float64    // excesses kept (decayed; see ident.kept)
	sumX    float64    // Σ of them, seconds (decayed)
	base    float64    // what they were measured from
	shifted bool       // base was the floor
	mins    [2]float64 // the two smallest long gaps folded, seconds
	minsAt  int64      // when the smaller of mins was seen
	touched int64      // last report that used it
}

// profiles holds the profiles of one recorder.
type profiles struct {
	mu  sync.Mutex
	m   map[uint64]*profile
	max int
}

func newProfiles(max int) *profiles {
	return &profiles{m: map[uint64]*profile{}, max: max}
}

// sameBase reports whether the profile's excesses were measured from the
// same refresh base (within 1 %, at least 1 s), so that they add to the
// ring's. An identity whose behaviour was read differently when they were
// folded (say, honouring before enough gaps showed the clamp) starts its
// demand profile over.
func (p profile) sameBase(base float64, shifted bool) bool {
	return p.d > 0 && p.shifted == shifted && math.Abs(p.base-base) <= max(1, 0.01*base)
}

// get returns a copy of key's profile (the zero profile when none).
func (p *profiles) get(key uint64) profile {
	if p == nil {
		return profile{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr := p.m[key]; pr != nil {
		return *pr
	}
	return profile{}
}

// fold moves the gaps of the identities in ids that end before limit into
// their profiles.
func (p *profiles) fold(ids []*ident, limit, now int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		pr := p.m[id.key]
		if pr == nil {
			if len(p.m) >= p.max {
				p.evictOldest()
			}
			pr = &profile{at: limit}
			p.m[id.key] = pr
		}
		pr.touched = now
		if limit <= pr.until {
			continue
		}
		f := math.Exp(-float64(limit-pr.at) / float64(profileTau))
		pr.n, pr.short, pr.sumG = pr.n*f, pr.short*f, pr.sumG*f
		pr.d, pr.sumX = pr.d*f, pr.sumX*f
		if !pr.sameBase(id.base, id.shifted) {
			pr.d, pr.sumX = 0, 0
		}
		pr.base, pr.shifted = id.base, id.shifted
		pr.at = limit
		if limit-pr.minsAt > int64(profileMinAge) {
			pr.mins = [2]float64{}
		}
		for i := 1; i < len(id.ev); i++ {
			e := id.ev[i]
			if e.at < pr.until || e.at >= limit {
				continue
			}
			g := float64(e.at-id.ev[i-1].at) / 1e9
			if g < 0.5*float64(max(id.ev[i-1].ttl, 1)) {
				pr.short++
				continue
			}
			pr.n++
			pr.sumG += g
			if x := g - id.base; id.base > 0 && !(id.shifted && x <= 0) && max(x, 0) < id.cens {
				pr.d++
				pr.sumX += max(x, 0)
			}
			switch {
			case pr.mins[0] == 0 || g < pr.mins[0]:
				pr.mins[1], pr.mins[0] = pr.mins[0], g
				pr.minsAt = e.at
			case pr.mins[1] == 0 || g < pr.mins[1]:
				pr.mins[1] = g
			}
		}
		pr.until = limit
	}
	for k, pr := range p.m {
		if now-pr.touched > int64(2*profileTau) {
			delete(p.m, k)
		}
	}
}

// evictOldest drops the least recently used profile.
func (p *profiles) evictOldest() {
	var oldest uint64
	first := true
	var at int64
	for k, pr := range p.m {
		if first || pr.touched < at {
			oldest, at, first = k, pr.touched, false
		}
	}
	delete(p.m, oldest)
}
