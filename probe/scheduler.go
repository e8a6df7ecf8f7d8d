package probe

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"meridian/config"
)

// DefaultMaxInFlight bounds how many probes run at once on a node.
const DefaultMaxInFlight = 256

// jitter is the fraction by which each interval is randomly lengthened or
// shortened, so that targets started together drift apart.
const jitter = 0.05

// Observer receives every probe result. Observe is called from the probing
// goroutines, one call at a time per target; it must not block for long.
type Observer interface {
	Observe(t Target, r Result)
}

// SchedulerOptions configures a Scheduler.
type SchedulerOptions struct {
	Observer    Observer
	Logger      *slog.Logger
	Metrics     *Metrics // nil: not exported
	MaxInFlight int      // default DefaultMaxInFlight
}

// Scheduler probes every distinct target of the configuration once per its
// check's interval. Each target has its own goroutine, so a hung target costs
// at most its timeout and never delays another; a semaphore bounds how many
// probes run at once. Update adds and removes targets while it runs.
type Scheduler struct {
	opts SchedulerOptions
	sem  chan struct{}

	mu      sync.Mutex
	ctx     context.Context // set by Run; nil before
	wg      sync.WaitGroup
	workers map[Target]*worker
	specs   map[string]*Spec
}

// worker probes one target until stopped.
type worker struct {
	target Target
	spec   atomic.Pointer[Spec]
	stop   context.CancelFunc
}

// NewScheduler returns a scheduler with no targets; Update gives it some.
func NewScheduler(opts SchedulerOptions) *Scheduler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	return &Scheduler{opts: opts, sem: make(chan struct{}, opts.MaxInFlight), workers: map[Target]*worker{}}
}

// BuildSpecs prepares every check of cfg. It is the fallible part of
// Update, exposed so a reload can fail before anything is swapped.
func BuildSpecs(cfg *config.Config) (map[string]*Spec, error) {
	names := make([]string, 0, len(cfg.Checks))
	for n := range cfg.Checks {
		names = append(names, n)
	}
	sort.Strings(names)
	specs := make(map[string]*Spec, len(names))
	for _, n := range names {
		s, err := NewSpec(n, cfg.Checks[n], cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		specs[n] = s
	}
	return specs, nil
}

// Update switches to cfg's targets: new ones start, removed ones stop, and
// kept ones continue with their check's new settings. On error nothing changes.
func (s *Scheduler) Update(cfg *config.Config) error {
	specs, err := BuildSpecs(cfg)
	if err != nil {
		return err
	}
	want := map[Target]bool{}
	for _, t := range Targets(cfg) {
		want[t] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specs = specs
	for t, w := range s.workers {
		if !want[t] {
			if w.stop != nil {
				w.stop()
			}
			delete(s.workers, t)
			s.opts.Metrics.Forget(t)
		}
	}
	for t := range want {
		s.ensure(t)
	}
	return nil
}

// ensure starts or refreshes the worker of t. The caller holds s.mu.
func (s *Scheduler) ensure(t Target) {
	w := s.workers[t]
	if w == nil {
		w = &worker{target: t}
		s.workers[t] = w
	}
	w.spec.Store(s.specs[t.Check])
	if w.stop == nil && s.ctx != nil {
		s.start(w)
	}
}

func (s *Scheduler) start(w *worker) {
	ctx, cancel := context.WithCancel(s.ctx)
	w.stop = cancel
	s.wg.Go(func() { s.loop(ctx, w) })
}

// Run starts probing and blocks until ctx ends and every probe has returned.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	for _, w := range s.workers {
		s.start(w)
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.wg.Wait()
	return nil
}

// loop probes w's target once per interval, starting at a random point of
// the first interval so that targets spread over it. Each probe starts an
// interval (with jitter) after the previous one started, however long that
// one took, so a slow or hung target keeps its cadence: with fall 2 it goes
// down within 2 × interval + timeout, not 2 × (interval + timeout). A probe
// that took longer than the interval (a timeout above it) is followed at once.
func (s *Scheduler) loop(ctx context.Context, w *worker) {
	interval := w.spec.Load().Check.Interval.Duration
	timer := time.NewTimer(rand.N(interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		started := time.Now()
		spec := w.spec.Load()
		if !s.probeOnce(ctx, w.target, spec) {
			return
		}
		timer.Reset(max(jittered(spec.Check.Interval.Duration)-time.Since(started), 0))
	}
}

func jittered(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*2-1)*jitter*float64(d))
}

// probeOnce waits for a probing slot, probes, and reports the result. It
// returns false when ctx ended first (the result is then not reported).
func (s *Scheduler) probeOnce(ctx context.Context, t Target, spec *Spec) bool {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	r := spec.Run(ctx, t)
	<-s.sem
	if ctx.Err() != nil {
		return false
	}
	s.opts.Metrics.observe(t, r)
	if s.opts.Observer != nil {
		s.opts.Observer.Observe(t, r)
	}
	return true
}

// Targets returns the targets being probed, sorted.
func (s *Scheduler) Targets() []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Target, 0, len(s.workers))
	for t := range s.workers {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
