// Package health turns probe results into verdicts and verdicts into the
// immutable snapshots the resolver answers from.
//
// Local applies rise/fall hysteresis to this node's own probe results: a
// target goes up after `rise` consecutive successes and down after `fall`
// consecutive failures; until its first verdict it is Unknown, and Unknown
// is not down. Every transition is logged once, with its reason.
package health

import (
	"log/slog"
	"sync"
	"time"

	"meridian/config"
	"meridian/probe"
)

// State is a target's verdict.
type State int8

// The verdicts. Unknown (no verdict yet) counts as up when answering.
const (
	Unknown State = iota
	Up
	Down
)

func (s State) String() string {
	return [...]string{"unknown", "up", "down"}[s]
}

// rttWeight is the weight of a new RTT sample in the moving average.
const rttWeight = 0.3

// A change of RTT alone is signalled to subscribers only when the RTT
// moved by more than either bound since the last signal for the target;
// smaller moves still take a new seq (so views carry them) but wait for
// the next signal. Without this every successful probe, whose connect time
// always differs a little, would rebuild the snapshot and the answer
// table: at 1,000 targets a second that is a rebuild loop that never
// rests. The bounds are gossip's for broadcasting an RTT change.
const (
	rttSignalRelative = 0.20
	rttSignalAbsolute = 5 * time.Millisecond
)

// Observation is what this node knows of one target.
type Observation struct {
	Target probe.Target
	State  State
	Since  time.Time     // when State began (zero while Unknown)
	RTT    time.Duration // moving average of successful probes' connect time
	Reason probe.Reason  // the last failure's reason (ReasonOK after a success)
	Detail string
	Seq    uint64 // increases with every change to this observation
}

// tracker is the hysteresis state of one target.
type tracker struct {
	obs        Observation
	okRun, bad int           // consecutive successes and failures
	signalled  time.Duration // the RTT at the last signal to subscribers
}

// Local holds this node's verdicts. It is safe for concurrent use; Observe
// never blocks on readers.
type Local struct {
	log     *slog.Logger
	now     func() time.Time
	mu      sync.Mutex
	rules   map[string]config.Check
	targets map[probe.Target]*tracker
	seq     uint64
	subs    []chan struct{}
}

// NewLocal returns an empty Local. now may be nil (time.Now).
func NewLocal(log *slog.Logger, now func() time.Time) *Local {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Local{log: log, now: now, rules: map[string]config.Check{}, targets: map[probe.Target]*tracker{}}
}

// Configure takes the rise/fall rules of cfg's checks and forgets targets
// cfg no longer has; targets it keeps keep their state.
func (l *Local) Configure(cfg *config.Config) {
	keep := map[probe.Target]bool{}
	for _, t := range probe.Targets(cfg) {
		keep[t] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rules = cfg.Checks
	for t := range l.targets {
		if !keep[t] {
			delete(l.targets, t)
			l.seq++ // a full view taken from now on drops it at peers
		}
	}
	l.notify()
}

// Subscribe returns a channel that receives (coalesced) whenever an
// observation changes, except for small moves of RTT alone (see
// rttSignalRelative): those show in the next View, and in the next signal.
// Each subscriber has its own channel.
func (l *Local) Subscribe() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(chan struct{}, 1)
	l.subs = append(l.subs, c)
	return c
}

// notify signals every subscriber without blocking. The caller holds l.mu.
func (l *Local) notify() {
	for _, c := range l.subs {
		signal(c)
	}
}

// signal sends on a coalescing channel (capacity 1) without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Observe applies one probe result to its target's hysteresis.
func (l *Local) Observe(t probe.Target, r probe.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rule, ok := l.rules[t.Check]
	if !ok {
		return // the check was removed while the probe ran
	}
	tr := l.targets[t]
	if tr == nil {
		tr = &tracker{obs: Observation{Target: t}}
		l.targets[t] = tr
	}
	before := tr.obs
	tr.apply(r, rule, l.now())
	if tr.obs.State != before.State {
		l.logTransition(tr, before.State)
	}
	if tr.obs != before {
		l.seq++
		tr.obs.Seq = l.seq
		if !rttOnly(before, tr.obs) || rttMoved(tr.signalled, tr.obs.RTT) {
			tr.signalled = tr.obs.RTT
			l.notify()
		}
	}
}

// rttOnly reports whether a and b differ at most in RTT (and seq).
func rttOnly(a, b Observation) bool {
	a.RTT, a.Seq, b.Seq = b.RTT, 0, 0
	return a == b
}

// rttMoved reports whether an RTT moved from old to cur by more than
// rttSignalRelative of old or more than rttSignalAbsolute.
func rttMoved(old, cur time.Duration) bool {
	d := cur - old
	if d < 0 {
		d = -d
	}
	return d > rttSignalAbsolute || float64(d) > rttSignalRelative*float64(old)
}

// apply counts r into the runs and moves the verdict when a run is long enough.
func (tr *tracker) apply(r probe.Result, rule config.Check, now time.Time) {
	if r.OK {
		tr.okRun, tr.bad = tr.okRun+1, 0
		tr.obs.Reason, tr.obs.Detail = probe.ReasonOK, ""
		tr.obs.RTT = ewma(tr.obs.RTT, r.RTT)
		if tr.obs.State != Up && tr.okRun >= rule.Rise {
			tr.obs.State, tr.obs.Since = Up, now
		}
		return
	}
	tr.okRun, tr.bad = 0, tr.bad+1
	tr.obs.Reason, tr.obs.Detail = r.Reason, r.Detail
	if tr.obs.State != Down && tr.bad >= rule.Fall {
		tr.obs.State, tr.obs.Since = Down, now
	}
}

func ewma(avg, sample time.Duration) time.Duration {
	if avg == 0 {
		return sample
	}
	return time.Duration(rttWeight*float64(sample) + (1-rttWeight)*float64(avg))
}

func (l *Local) logTransition(tr *tracker, from State) {
	o := tr.obs
	attrs := []any{"target", o.Target.String(), "from", from.String(), "to", o.State.String()}
	if o.State == Down {
		l.log.Warn("target down", append(attrs, "reason", string(o.Reason), "detail", o.Detail, "failures", tr.bad)...)
		return
	}
	l.log.Info("target up", append(attrs, "successes", tr.okRun, "rtt", o.RTT)...)
}

// Get returns the observation of t, and false when there is none yet.
func (l *Local) Get(t probe.Target) (Observation, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tr, ok := l.targets[t]
	if !ok {
		return Observation{Target: t}, false
	}
	return tr.obs, true
}

// Seq returns the latest seq: it grows with every change to any
// observation.
func (l *Local) Seq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// View returns a copy of every observation with a seq above since, and
// the latest seq.
func (l *Local) View(since uint64) ([]Observation, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Observation, 0, len(l.targets))
	for _, tr := range l.targets {
		if tr.obs.Seq > since {
			out = append(out, tr.obs)
		}
	}
	return out, l.seq
}
