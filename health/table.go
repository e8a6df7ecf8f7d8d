package health

// The merge and decision rules, after serf's ordering and memberlist's
// anti-entropy:
//
//   - Order by origin. Each node numbers its own observations: an epoch (its
//     process start, so a restart supersedes everything before it) and a seq
//     per change. For one (origin, target) the highest (epoch, seq) wins; a
//     full view (push/pull) from a newer or equal epoch replaces the origin's
//     whole view. Wall clocks are never compared across nodes.
//   - Judge staleness by the receiver's clock. The table records when it
//     last heard from each origin (any view merged: a broadcast, a full view
//     or an empty heartbeat view), by its own clock. A peer that sends
//     heartbeats (Member.Heartbeats: it sends a view at least every
//     stale_after/3 even when nothing changes) stops voting once it has not
//     been heard from for stale_after, even while memberlist still sees it
//     alive: a hung delegate cannot keep voting with its last word for ever.
//     (A peer of an older protocol, without heartbeats, is taken as heard
//     while memberlist sees it alive.) A peer memberlist reports dead or
//     gone stops voting stale_after after its death or its last word,
//     whichever is first. Its views stay in the table for display, marked as
//     not voting (Observers, Members). A node cut off from every
//     other thus answers from its last knowledge until that is stale, then
//     from its own region's view — never from nothing, since its own probes
//     always vote.
//   - Decide by quorum. A region votes up when a strict majority of its
//     voting nodes that have a verdict see the target up, down otherwise; a
//     region none of whose nodes has a verdict does not vote. An endpoint is
//     up when the service's quorum of voting regions says up. No vote at all
//     is Unknown, and Unknown is not down.

import (
	"slices"
	"sort"
	"sync"
	"time"

	"meridian/config"
	"meridian/probe"
)

// Member is a cluster member as the gossip layer sees it.
type Member struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Alive  bool   `json:"alive"`
	// Stale (in Members only) is set for a peer whose views do not vote:
	// not heard from within stale_after, or dead for longer.
	Stale bool `json:"stale,omitempty"`
	// Heartbeats (in SetMember) tells that the peer sends a view at least
	// every stale_after/3, so that its silence makes it stale although
	// memberlist sees it alive. A peer of an older protocol that does not
	// keeps voting while it is alive.
	Heartbeats bool `json:"-"`
}

// peerView is what one other node told us.
type peerView struct {
	region     string
	epoch      uint64
	obs        map[probe.Target]Observation
	alive      bool
	heartbeats bool        // silence past stale_after makes it stale
	downSince  time.Time   // receiver's clock; zero while alive
	heard      time.Time   // receiver's clock: the last view merged from it
	staleTimer *time.Timer // signals Changed stale_after after heard
}

// Table merges this node's observations with those gossiped by its peers
// and decides each endpoint by quorum. It is safe for concurrent use.
type Table struct {
	self, region string
	local        *Local
	staleAfter   time.Duration
	now          func() time.Time

	mu      sync.Mutex
	peers   map[string]*peerView
	changed chan struct{}
}

// TableOptions configures a Table.
type TableOptions struct {
	Self, Region string        // this node's name and region
	StaleAfter   time.Duration // how long a silent or dead peer's view keeps voting
	Now          func() time.Time
}

// NewTable returns a Table over local with no peers.
func NewTable(local *Local, opts TableOptions) *Table {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Table{self: opts.Self, region: opts.Region, local: local, staleAfter: opts.StaleAfter,
		now: opts.Now, peers: map[string]*peerView{}, changed: make(chan struct{}, 1)}
}

// Changed signals (coalesced) that a peer's view or liveness changed, or
// that a peer's view just went stale or voted again.
func (t *Table) Changed() <-chan struct{} { return t.changed }

// StaleAfter is how long a peer's view keeps voting after its last word
// (gossip sends heartbeats three times as often).
func (t *Table) StaleAfter() time.Duration { return t.staleAfter }

// SetMember records a peer's region and liveness (from memberlist events).
func (t *Table) SetMember(m Member) {
	if m.Name == t.self {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peer(m.Name)
	p.region = m.Region
	p.heartbeats = m.Heartbeats
	switch {
	case m.Alive:
		p.alive, p.downSince = true, time.Time{}
	case p.alive || p.downSince.IsZero():
		p.alive, p.downSince = false, t.now()
		time.AfterFunc(t.staleAfter, func() { signal(t.changed) })
	}
	signal(t.changed)
}

func (t *Table) peer(name string) *peerView {
	p := t.peers[name]
	if p == nil {
		p = &peerView{obs: map[probe.Target]Observation{}}
		t.peers[name] = p
	}
	return p
}

// View is a set of one node's own observations, as gossip carries it:
// Full for its whole view (push/pull), else the targets that changed.
type View struct {
	Origin string
	Region string
	Epoch  uint64 // the origin's process start: a restart supersedes
	Seq    uint64 // the origin's latest seq when the view was taken
	Full   bool
	Obs    []Observation
}

// Merge applies a gossiped view and reports whether anything changed. A
// newer epoch discards what the origin said before; within an epoch a
// target's higher seq wins; a full view also drops the targets it no longer
// holds (unless they changed after it was taken).
func (t *Table) Merge(v View) bool {
	if v.Origin == t.self || v.Origin == "" {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peer(v.Origin)
	if v.Epoch < p.epoch {
		return false
	}
	t.heard(p)
	changed := false
	if v.Region != "" && p.region != v.Region {
		p.region, changed = v.Region, true
	}
	if v.Epoch > p.epoch {
		changed = changed || len(p.obs) > 0
		clear(p.obs)
		p.epoch = v.Epoch
	}
	for _, o := range v.Obs {
		if cur, ok := p.obs[o.Target]; !ok || o.Seq > cur.Seq {
			p.obs[o.Target], changed = o, true
		}
	}
	if v.Full {
		changed = dropMissing(p.obs, v) || changed
	}
	if changed {
		signal(t.changed)
	}
	return changed
}

// Silent reports whether origin, a peer that sends heartbeats, was heard
// from before but not within stale_after by this node's clock, so that its
// views do not vote. Such a peer, once heard again, may have missed this
// node's broadcasts meanwhile (a partition cuts both ways): gossip sends it
// this node's whole view.
func (t *Table) Silent(origin string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[origin]
	return p != nil && p.heartbeats && !p.heard.IsZero() && t.now().Sub(p.heard) >= t.staleAfter
}

// heard records that p was just heard from, by this node's clock, and
// arms the signal of its going stale. Its coming back to a vote is
// signalled at once; it is not a change Merge reports (that would make
// gossip relay a message that holds nothing new).
func (t *Table) heard(p *peerView) {
	now := t.now()
	wasVoting := t.voting(p, now)
	p.heard = now
	if p.staleTimer == nil {
		p.staleTimer = time.AfterFunc(t.staleAfter, func() { signal(t.changed) })
	} else {
		p.staleTimer.Reset(t.staleAfter)
	}
	if !wasVoting && t.voting(p, now) {
		signal(t.changed)
	}
}

// dropMissing removes the targets a full view no longer holds, except
// those updated after the view was taken.
func dropMissing(view map[probe.Target]Observation, v View) bool {
	keep := make(map[probe.Target]bool, len(v.Obs))
	for _, o := range v.Obs {
		keep[o.Target] = true
	}
	changed := false
	for tg, o := range view {
		if !keep[tg] && o.Seq <= v.Seq {
			delete(view, tg)
			changed = true
		}
	}
	return changed
}

// voting reports whether p's view still counts, by our clock: heard from
// within stale_after (a peer that sends no heartbeats is taken as heard
// while alive), and not dead for stale_after.
func (t *Table) voting(p *peerView, now time.Time) bool {
	fresh := !p.heartbeats || now.Sub(p.heard) < t.staleAfter
	return p.region != "" && fresh && (p.alive || now.Sub(p.downSince) < t.staleAfter)
}

// RegionVote is one region's say on a target.
type RegionVote struct {
	Region string
	State  State         // Up, Down, or Unknown (the region did not vote)
	Up     int           // voting nodes that see it up
	Down   int           // voting nodes that see it down
	RTT    time.Duration // median of the region's nodes' RTTs (0: none)
}

// Decision is the cluster's verdict on a target under one quorum rule.
type Decision struct {
	State   State
	Regions []RegionVote // sorted by region
}

// Decide returns the verdict on target tg under quorum q.
func (t *Table) Decide(tg probe.Target, q config.Quorum) Decision {
	byRegion := t.observations(tg)
	d := Decision{}
	voters, ups := 0, 0
	for region, obs := range byRegion {
		v := regionVote(region, obs)
		d.Regions = append(d.Regions, v)
		if v.State != Unknown {
			voters++
		}
		if v.State == Up {
			ups++
		}
	}
	sort.Slice(d.Regions, func(i, j int) bool { return d.Regions[i].Region < d.Regions[j].Region })
	switch {
	case voters == 0:
		d.State = Unknown
	case ups >= q.Needed(voters):
		d.State = Up
	default:
		d.State = Down
	}
	return d
}

// observations collects every voting node's observation of tg, by region.
func (t *Table) observations(tg probe.Target) map[string][]Observation {
	out := map[string][]Observation{}
	if o, ok := t.local.Get(tg); ok {
		out[t.region] = append(out[t.region], o)
	} else {
		out[t.region] = nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, p := range t.peers {
		if o, ok := p.obs[tg]; ok && t.voting(p, now) {
			out[p.region] = append(out[p.region], o)
		}
	}
	return out
}

func regionVote(region string, obs []Observation) RegionVote {
	v := RegionVote{Region: region}
	var rtts []time.Duration
	for _, o := range obs {
		switch o.State {
		case Up:
			v.Up++
		case Down:
			v.Down++
		}
		if o.RTT > 0 {
			rtts = append(rtts, o.RTT)
		}
	}
	switch known := v.Up + v.Down; {
	case known == 0:
		v.State = Unknown
	case 2*v.Up > known:
		v.State = Up
	default:
		v.State = Down
	}
	v.RTT = median(rtts)
	return v
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

// Members returns the peers the table knows, with their liveness, sorted.
func (t *Table) Members() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []Member{{Name: t.self, Region: t.region, Alive: true}}
	now := t.now()
	for name, p := range t.peers {
		out = append(out, Member{Name: name, Region: p.region, Alive: p.alive, Stale: !t.voting(p, now)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NodeObservation is one node's observation of a target, as the table
// holds it, and whether that node's view currently votes.
type NodeObservation struct {
	Node   string
	Region string
	Voting bool
	Observation
}

// Observers returns every node's observation of tg (own first, then peers
// by name), for status pages.
func (t *Table) Observers(tg probe.Target) []NodeObservation {
	out := []NodeObservation{}
	if o, ok := t.local.Get(tg); ok {
		out = append(out, NodeObservation{Node: t.self, Region: t.region, Voting: true, Observation: o})
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var peers []NodeObservation
	for name, p := range t.peers {
		if o, ok := p.obs[tg]; ok {
			peers = append(peers, NodeObservation{Node: name, Region: p.region, Voting: t.voting(p, now), Observation: o})
		}
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Node < peers[j].Node })
	return append(out, peers...)
}
