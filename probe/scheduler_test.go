package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
)

// The scheduler tests run the real Scheduler against loopback listeners.
// Counts over a window have loose bounds: they must tell "once per
// interval" from "twice" or "never", not measure the timer.

// schedServer accepts TCP connections on loopback and counts them: how many
// were accepted, how many are open and the most that were open at once.
// Each connection is held for hold, or until the client closes it when hold
// is zero. The count drops before the server closes, so a client that sees
// the close was already uncounted: the peak never overstates the probes in
// flight.
type schedServer struct {
	l                    net.Listener
	accepted, open, peak atomic.Int64
}

func startSchedServer(t *testing.T, hold time.Duration) *schedServer {
	t.Helper()
	s := &schedServer{l: listen(t)}
	go func() {
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			n := s.open.Add(1)
			for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
			}
			go s.hold(c, hold)
		}
	}()
	return s
}

// hold keeps c open for d (or until the client closes it), then uncounts it and closes it.
func (s *schedServer) hold(c net.Conn, d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	} else {
		c.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds the test
		var b [1024]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				break
			}
		}
	}
	s.open.Add(-1)
	c.Close()
}

func (s *schedServer) port() int { return s.l.Addr().(*net.TCPAddr).Port }

// schedCheck is a check of type typ on port with the given interval and timeout.
func schedCheck(typ string, port int, interval, timeout time.Duration) config.Check {
	c := config.Check{Type: typ, Port: port, Rise: 1, Fall: 1}
	c.Interval.Duration, c.Timeout.Duration = interval, timeout
	return c
}

// schedEndpoint is an endpoint at addr checked by check.
func schedEndpoint(check, addr string) config.Endpoint {
	return config.Endpoint{Name: check + "@" + addr, Check: check, Address: addr, Addr: netip.MustParseAddr(addr)}
}

// schedConfig is a configuration with checks and one service per endpoint list.
func schedConfig(checks map[string]config.Check, services ...[]config.Endpoint) *config.Config {
	cfg := &config.Config{Checks: checks}
	for i, eps := range services {
		cfg.Services = append(cfg.Services, config.Service{Name: fmt.Sprintf("s%d.example.test.", i), Endpoints: eps})
	}
	return cfg
}

// loopback is the target of check on 127.0.0.1.
func loopback(check string, port int) Target {
	return Target{Check: check, Address: netip.MustParseAddr("127.0.0.1"), Port: port}
}

// schedRecorder is an Observer that keeps every result with its time.
type schedRecorder struct {
	mu   sync.Mutex
	seen map[Target][]schedSeen
}

type schedSeen struct {
	at time.Time
	r  Result
}

func (rec *schedRecorder) Observe(t Target, r Result) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.seen == nil {
		rec.seen = map[Target][]schedSeen{}
	}
	rec.seen[t] = append(rec.seen[t], schedSeen{time.Now(), r})
}

// of returns t's results so far.
func (rec *schedRecorder) of(t Target) []schedSeen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.seen[t])
}

// count returns how many results t had in [from, to).
func (rec *schedRecorder) count(t Target, from, to time.Time) int {
	n := 0
	for _, s := range rec.of(t) {
		if !s.at.Before(from) && s.at.Before(to) {
			n++
		}
	}
	return n
}

// maxGap returns the longest time between t's consecutive results in [from, to).
func (rec *schedRecorder) maxGap(t Target, from, to time.Time) time.Duration {
	var gap time.Duration
	var last time.Time
	for _, s := range rec.of(t) {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		if !last.IsZero() {
			gap = max(gap, s.at.Sub(last))
		}
		last = s.at
	}
	return gap
}

// runSched runs s until the returned stop is called (or the test ends);
// stop cancels Run and fails the test unless it returns within limit.
func runSched(t *testing.T, s *Scheduler, limit time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(limit):
				t.Errorf("Run did not return within %v of its context's end", limit)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond every 5 ms until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// within fails the test unless lo <= n <= hi.
func within(t *testing.T, what string, n, lo, hi int) {
	t.Helper()
	if n < lo || n > hi {
		t.Errorf("%s: %d, want %d..%d", what, n, lo, hi)
	}
}

func TestSchedulerProbesEachTargetOncePerInterval(t *testing.T) {
	const interval = 100 * time.Millisecond
	a, b := startSchedServer(t, 0), startSchedServer(t, 0)
	checks := map[string]config.Check{
		"a": schedCheck("tcp", a.port(), interval, interval),
		"b": schedCheck("tcp", b.port(), interval, interval),
	}
	shared := schedEndpoint("a", "127.0.0.1")
	viaProbeAddress := schedEndpoint("a", "192.0.2.7")
	viaProbeAddress.ProbeAddress = "127.0.0.1" // the same target again
	cfg := schedConfig(checks,
		[]config.Endpoint{shared},
		[]config.Endpoint{shared, schedEndpoint("b", "127.0.0.1")},
		[]config.Endpoint{viaProbeAddress})
	rec := &schedRecorder{}
	s := NewScheduler(SchedulerOptions{Observer: rec})
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	ta, tb := loopback("a", a.port()), loopback("b", b.port())
	if got := s.Targets(); !slices.Equal(got, []Target{ta, tb}) {
		t.Fatalf("targets %v, want %v and %v once each", got, ta, tb)
	}
	runSched(t, s, time.Second)

	time.Sleep(2 * interval) // past the random start within the first interval
	from, accepted := time.Now(), a.accepted.Load()
	time.Sleep(10 * interval)
	to := time.Now()
	within(t, "results of the shared target in 10 intervals", rec.count(ta, from, to), 6, 13)
	within(t, "connections to the shared target in 10 intervals", int(a.accepted.Load()-accepted), 6, 13)
	within(t, "results of the other target in 10 intervals", rec.count(tb, from, to), 6, 13)
	for _, seen := range rec.of(ta) {
		wantReason(t, seen.r, ReasonOK)
	}
}

// TestSchedulerSlowTargetKeepsCadence checks that a target whose probes
// take most of their timeout is still probed once per interval: the next
// probe starts an interval after the last one started, not after it ended.
// Otherwise a hung backend is probed every interval + timeout, and with
// fall 2 it leaves the answers after 2 × (interval + timeout), past the
// promised fall × interval + timeout.
func TestSchedulerSlowTargetKeepsCadence(t *testing.T) {
	const interval, timeout = 100 * time.Millisecond, 80 * time.Millisecond
	hung := startSchedServer(t, 0) // accepts, never answers the TLS handshake
	cfg := schedConfig(map[string]config.Check{"hung": schedCheck("tls", hung.port(), interval, timeout)},
		[]config.Endpoint{schedEndpoint("hung", "127.0.0.1")})
	rec := &schedRecorder{}
	s := NewScheduler(SchedulerOptions{Observer: rec})
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	runSched(t, s, time.Second)
	th := loopback("hung", hung.port())

	time.Sleep(2 * interval) // past the random start within the first interval
	from := time.Now()
	time.Sleep(20 * interval)
	to := time.Now()
	// Once per interval: about 20. Once per interval + timeout: about 11.
	within(t, "timed-out probes of the slow target in 20 intervals", rec.count(th, from, to), 16, 23)
	if gap := rec.maxGap(th, from, to); gap > interval*3/2 {
		t.Errorf("%v between two probes of the slow target, want about the %v interval", gap, interval)
	}
	for _, seen := range rec.of(th) {
		wantReason(t, seen.r, ReasonTimeout)
	}
}

func TestSchedulerHungTargetDoesNotDelayOthers(t *testing.T) {
	const interval, hangTimeout = 50 * time.Millisecond, time.Second
	hung, fast := startSchedServer(t, 0), startSchedServer(t, 0) // hung: no TLS answer ever
	cfg := schedConfig(map[string]config.Check{
		"hung": schedCheck("tls", hung.port(), interval, hangTimeout),
		"fast": schedCheck("tcp", fast.port(), interval, interval),
	}, []config.Endpoint{schedEndpoint("hung", "127.0.0.1"), schedEndpoint("fast", "127.0.0.1")})
	rec := &schedRecorder{}
	s := NewScheduler(SchedulerOptions{Observer: rec})
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	runSched(t, s, time.Second)

	th, tf := loopback("hung", hung.port()), loopback("fast", fast.port())
	waitFor(t, 2*time.Second, "a probe of the hung target in flight", func() bool { return hung.open.Load() > 0 })
	from := time.Now()
	waitFor(t, 5*hangTimeout, "the hung target's first timeout", func() bool { return len(rec.of(th)) > 0 })
	to := time.Now()
	// The hung probe lasts its whole timeout; meanwhile the fast target keeps
	// its cadence.
	within(t, "fast results while the hung probe ran", rec.count(tf, from, to), int(to.Sub(from)/interval)/2, int(to.Sub(from)/interval)+2)
	if gap := rec.maxGap(tf, from, to); gap > 4*interval {
		t.Errorf("the fast target waited %v between probes (interval %v) while the hung probe ran", gap, interval)
	}
	wantReason(t, rec.of(th)[0].r, ReasonTimeout)
}

func TestSchedulerMaxInFlight(t *testing.T) {
	const bound, targets = 3, 10
	const interval, hold = 20 * time.Millisecond, 100 * time.Millisecond
	checks := map[string]config.Check{}
	var eps []config.Endpoint
	var servers []*schedServer
	for i := range targets {
		srv := startSchedServer(t, hold) // answers no TLS, closes after hold
		servers = append(servers, srv)
		name := fmt.Sprintf("h%d", i)
		checks[name] = schedCheck("tls", srv.port(), interval, time.Second)
		eps = append(eps, schedEndpoint(name, "127.0.0.1"))
	}
	rec := &schedRecorder{}
	s := NewScheduler(SchedulerOptions{Observer: rec, MaxInFlight: bound})
	if err := s.Update(schedConfig(checks, eps)); err != nil {
		t.Fatal(err)
	}
	runSched(t, s, time.Second)

	open := func() (now, peak, accepted int64) {
		for _, srv := range servers {
			now += srv.open.Load()
			peak = max(peak, srv.peak.Load())
			accepted += srv.accepted.Load()
		}
		return now, peak, accepted
	}
	reached := false
	for start := time.Now(); time.Since(start) < 10*hold; time.Sleep(time.Millisecond) {
		now, _, _ := open()
		if now > bound {
			t.Fatalf("%d probes in flight, want at most %d", now, bound)
		}
		reached = reached || now == bound
	}
	_, peak, accepted := open()
	if !reached {
		t.Errorf("never %d probes in flight (demand is about %d): the bound was not exercised", bound, targets*int(hold)/int(hold+interval))
	}
	// Each slot serves one held connection at a time.
	within(t, "connections accepted in 10 holds", int(accepted), bound*5, bound*11+targets)
	if peak > bound {
		t.Errorf("one listener had %d connections at once", peak)
	}
}

func TestSchedulerUpdate(t *testing.T) {
	const interval = 50 * time.Millisecond
	keep, gone, added := startSchedServer(t, 0), startSchedServer(t, 0), startSchedServer(t, 0)
	checks := map[string]config.Check{
		"keep": schedCheck("tcp", keep.port(), interval, interval),
		"gone": schedCheck("tcp", gone.port(), interval, interval),
	}
	before := schedConfig(checks, []config.Endpoint{schedEndpoint("keep", "127.0.0.1"), schedEndpoint("gone", "127.0.0.1")})
	reg := prometheus.NewRegistry()
	rec := &schedRecorder{}
	s := NewScheduler(SchedulerOptions{Observer: rec, Metrics: NewMetrics(reg)})
	if err := s.Update(before); err != nil {
		t.Fatal(err)
	}
	runSched(t, s, time.Second)
	tk, tg, ta := loopback("keep", keep.port()), loopback("gone", gone.port()), loopback("added", added.port())
	waitFor(t, 2*time.Second, "both targets probed twice", func() bool { return len(rec.of(tk)) >= 2 && len(rec.of(tg)) >= 2 })
	if series := successSeries(t, reg); !slices.Contains(series, tg.String()) {
		t.Fatalf("no success series for %s before the update: %v", tg, series)
	}
	worker := s.workerOf(tk)

	after := schedConfig(map[string]config.Check{
		"keep":  checks["keep"],
		"added": schedCheck("tcp", added.port(), interval, interval),
	}, []config.Endpoint{schedEndpoint("keep", "127.0.0.1"), schedEndpoint("added", "127.0.0.1")})
	if err := s.Update(after); err != nil {
		t.Fatal(err)
	}
	updated := time.Now()
	if got := s.Targets(); !slices.Equal(got, []Target{ta, tk}) {
		t.Errorf("targets after the update %v, want %v", got, []Target{ta, tk})
	}
	if s.workerOf(tk) != worker {
		t.Error("the kept target's worker was replaced")
	}
	waitFor(t, 2*time.Second, "the added target probed", func() bool { return len(rec.of(ta)) > 0 })

	time.Sleep(2 * interval) // a removed probe already past its check may still report
	goneResults, goneConns := len(rec.of(tg)), gone.accepted.Load()
	from := time.Now()
	time.Sleep(10 * interval)
	to := time.Now()
	if n, c := len(rec.of(tg))-goneResults, gone.accepted.Load()-goneConns; n != 0 || c != 0 {
		t.Errorf("the removed target: %d results and %d connections in 10 intervals after the update, want none", n, c)
	}
	within(t, "results of the kept target in 10 intervals after the update", rec.count(tk, from, to), 6, 13)
	if gap := rec.maxGap(tk, updated.Add(-2*interval), to); gap > 3*interval {
		t.Errorf("the kept target's cadence broke around the update: %v between probes", gap)
	}
	series := successSeries(t, reg)
	if slices.Contains(series, tg.String()) || !slices.Contains(series, tk.String()) || !slices.Contains(series, ta.String()) {
		t.Errorf("success series %v: want %s and %s, not %s", series, tk, ta, tg)
	}
}

// workerOf returns the worker of t, nil when there is none.
func (s *Scheduler) workerOf(t Target) *worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workers[t]
}

// successSeries returns the target label of every meridian_probe_success series.
func successSeries(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range families {
		if f.GetName() != "meridian_probe_success" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "target" {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}

func TestSchedulerUpdateBadSpecChangesNothing(t *testing.T) {
	const interval = 50 * time.Millisecond
	old, added := startSchedServer(t, 0), startSchedServer(t, 0)
	good := schedConfig(map[string]config.Check{"old": schedCheck("tcp", old.port(), interval, interval)},
		[]config.Endpoint{schedEndpoint("old", "127.0.0.1")})
	rec := &schedRecorder{}
	s := NewScheduler(SchedulerOptions{Observer: rec})
	if err := s.Update(good); err != nil {
		t.Fatal(err)
	}
	runSched(t, s, time.Second)
	to := loopback("old", old.port())
	waitFor(t, 2*time.Second, "the target probed", func() bool { return len(rec.of(to)) > 0 })
	spec, targets := s.workerOf(to).spec.Load(), s.Targets()

	bad := schedConfig(map[string]config.Check{
		"old":   schedCheck("tcp", old.port(), 2*interval, interval), // a change that must not apply
		"added": schedCheck("tls", added.port(), interval, interval),
	}, []config.Endpoint{schedEndpoint("old", "127.0.0.1"), schedEndpoint("added", "127.0.0.1")})
	bad.TLS = config.TLSFiles{Cert: "/nonexistent/probe.pem", Key: "/nonexistent/probe.key"}
	err := s.Update(bad)
	if err == nil || !strings.Contains(err.Error(), "check added: client identity") || !strings.Contains(err.Error(), "/nonexistent/probe.pem") {
		t.Fatalf("Update with a missing certificate file: error %v, want it named", err)
	}
	if got := s.Targets(); !slices.Equal(got, targets) {
		t.Errorf("targets %v after a failed update, want %v", got, targets)
	}
	if s.workerOf(to).spec.Load() != spec {
		t.Error("a failed update replaced a kept target's check")
	}
	time.Sleep(5 * interval)
	if n := added.accepted.Load(); n != 0 {
		t.Errorf("the target of a failed update was probed %d times", n)
	}
}

func TestSchedulerRunStopsPromptly(t *testing.T) {
	hung, fast := startSchedServer(t, 0), startSchedServer(t, 0)
	cfg := schedConfig(map[string]config.Check{
		"hung": schedCheck("tls", hung.port(), 20*time.Millisecond, 10*time.Second),
		"fast": schedCheck("tcp", fast.port(), 20*time.Millisecond, 20*time.Millisecond),
	}, []config.Endpoint{schedEndpoint("hung", "127.0.0.1"), schedEndpoint("fast", "127.0.0.1")})
	baseline := runtime.NumGoroutine()
	s := NewScheduler(SchedulerOptions{Observer: &schedRecorder{}})
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	stop := runSched(t, s, 500*time.Millisecond)
	waitFor(t, 2*time.Second, "a hung probe in flight and fast probes done", func() bool {
		return hung.open.Load() > 0 && fast.accepted.Load() >= 3
	})
	stopped := time.Now()
	stop() // fails the test unless Run returns within 500 ms, the hung probe included
	t.Logf("Run returned %v after its context ended", time.Since(stopped))
	var now int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= baseline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 5 s after Run returned, %d before it started", now, baseline)
		}
	}
}

func TestTargets(t *testing.T) {
	api := config.Check{Type: "https", Port: 443}
	db := config.Check{Type: "postgres", Port: 5432}
	probed := schedEndpoint("api", "192.0.2.2")
	probed.ProbeAddress = "10.0.0.2"
	cname := config.Endpoint{Name: "cdn", Check: "api", CNAME: "cdn.example.net.", ProbeAddress: "10.0.0.3"}
	mapped := config.Endpoint{Name: "mapped", Check: "api", Address: "::ffff:192.0.2.9", Addr: netip.MustParseAddr("::ffff:192.0.2.9")}
	unchecked := schedEndpoint("", "192.0.2.4")
	unknown := schedEndpoint("smtp", "192.0.2.5")
	bareCNAME := config.Endpoint{Name: "bare", Check: "api", CNAME: "www.example.net."}
	cfg := schedConfig(map[string]config.Check{"api": api, "db": db},
		[]config.Endpoint{schedEndpoint("api", "192.0.2.1"), probed, cname, unchecked, bareCNAME},
		[]config.Endpoint{schedEndpoint("api", "192.0.2.1"), schedEndpoint("db", "192.0.2.1"), mapped, unknown})

	target := func(check, addr string, port int) Target {
		return Target{Check: check, Address: netip.MustParseAddr(addr), Port: port}
	}
	for _, tc := range []struct {
		e    config.Endpoint
		want Target
		ok   bool
	}{
		{schedEndpoint("api", "192.0.2.1"), target("api", "192.0.2.1", 443), true},
		{probed, target("api", "10.0.0.2", 443), true},
		{cname, target("api", "10.0.0.3", 443), true},
		{mapped, target("api", "192.0.2.9", 443), true},
		{unchecked, Target{}, false},
		{unknown, Target{}, false},
		{bareCNAME, Target{}, false},
	} {
		if got, ok := TargetOf(cfg, tc.e); got != tc.want || ok != tc.ok {
			t.Errorf("TargetOf(%s) = %v, %v; want %v, %v", tc.e.Name, got, ok, tc.want, tc.ok)
		}
	}
	want := []Target{target("api", "10.0.0.2", 443), target("api", "10.0.0.3", 443),
		target("api", "192.0.2.1", 443), target("api", "192.0.2.9", 443), target("db", "192.0.2.1", 5432)}
	if got := Targets(cfg); !slices.Equal(got, want) {
		t.Errorf("Targets = %v\nwant      %v", got, want)
	}
}
