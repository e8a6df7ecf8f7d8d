package health

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"meridian/config"
	"meridian/probe"
)

func testConfig(rise, fall int) *config.Config {
	return &config.Config{
		Checks: map[string]config.Check{"api": {Type: "tcp", Port: 443, Rise: rise, Fall: fall}},
		Services: []config.Service{{Name: "api.example.test.", Endpoints: []config.Endpoint{
			{Name: "a", Address: "192.0.2.1", Addr: netip.MustParseAddr("192.0.2.1"), Check: "api"},
			{Name: "b", Address: "192.0.2.2", Addr: netip.MustParseAddr("192.0.2.2")},
		}}},
	}
}

var targetA = probe.Target{Check: "api", Address: netip.MustParseAddr("192.0.2.1"), Port: 443}

func ok(rtt time.Duration) probe.Result { return probe.Result{OK: true, RTT: rtt} }

var refused = probe.Result{Reason: probe.ReasonRefused, Detail: "connection refused"}

// TestHysteresis feeds sequences of results and checks the state after each.
func TestHysteresis(t *testing.T) {
	cases := []struct {
		name       string
		rise, fall int
		seq        string // o = success, x = failure
		want       string // state after each result: U unknown, u up, d down
	}{
		{"rise 2", 2, 2, "oo", "Uu"},
		{"fall 2", 2, 2, "ooxx", "Uuud"},
		{"single failure ignored", 2, 2, "ooxoxo", "Uuuuuu"},
		{"first verdict down", 2, 2, "xx", "Ud"},
		{"back up needs rise", 3, 2, "ooo" + "xx" + "oo" + "o", "UUu" + "ud" + "dd" + "u"},
		{"rise 1 fall 1", 1, 1, "oxo", "udu"},
		{"flap never settles", 2, 2, "oxoxox", "UUUUUU"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := NewLocal(nil, nil)
			l.Configure(testConfig(c.rise, c.fall))
			var got strings.Builder
			for _, r := range c.seq {
				res := refused
				if r == 'o' {
					res = ok(time.Millisecond)
				}
				l.Observe(targetA, res)
				obs, _ := l.Get(targetA)
				got.WriteByte("Uud"[obs.State])
			}
			if got.String() != c.want {
				t.Errorf("states %s, want %s", got.String(), c.want)
			}
		})
	}
}

func TestObservationDetails(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLocal(nil, func() time.Time { return now })
	l.Configure(testConfig(1, 1))
	l.Observe(targetA, ok(10*time.Millisecond))
	now = now.Add(time.Minute)
	l.Observe(targetA, ok(20*time.Millisecond))
	obs, _ := l.Get(targetA)
	if obs.State != Up || !obs.Since.Equal(now.Add(-time.Minute)) || obs.RTT != 13*time.Millisecond {
		t.Errorf("after two successes: %+v, want up since the first, rtt 13ms", obs)
	}
	seq := obs.Seq
	l.Observe(targetA, refused)
	obs, _ = l.Get(targetA)
	if obs.State != Down || obs.Reason != probe.ReasonRefused || obs.Seq <= seq || !obs.Since.Equal(now) {
		t.Errorf("after a failure: %+v, want down (refused) since now with a newer seq", obs)
	}
}

func TestSnapshot(t *testing.T) {
	cfg := testConfig(1, 1)
	l := NewLocal(nil, nil)
	l.Configure(cfg)
	tb := NewTable(l, TableOptions{Self: "n1", Region: "r1", StaleAfter: time.Minute})
	s := NewSnapshot(cfg, tb)
	if !s.Up("api.example.test.", "a") {
		t.Error("unknown target must count as up")
	}
	l.Observe(targetA, refused)
	s = NewSnapshot(cfg, tb)
	if s.Up("api.example.test.", "a") {
		t.Error("down target answered")
	}
	if !s.Up("api.example.test.", "b") || s.Endpoint("api.example.test.", "b").Checked {
		t.Error("unchecked endpoint must be up and not checked")
	}
	if !s.Up("api.example.test.", "new") {
		t.Error("an endpoint the snapshot does not know must count as up")
	}
}

func TestConfigureForgetsRemovedTargets(t *testing.T) {
	cfg := testConfig(1, 1)
	l := NewLocal(nil, nil)
	l.Configure(cfg)
	l.Observe(targetA, refused)
	l.Configure(cfg)
	if _, ok := l.Get(targetA); !ok {
		t.Fatal("a kept target lost its state on reconfigure")
	}
	cfg.Services[0].Endpoints[0].Check = ""
	l.Configure(cfg)
	if _, ok := l.Get(targetA); ok {
		t.Error("a removed target kept its state")
	}
	l.Observe(probe.Target{Check: "gone"}, refused)
	if obs, _ := l.View(0); len(obs) != 0 {
		t.Error("a result for an unknown check was kept")
	}
}

// TestSubscribeSignalsChangesNotRTTNoise checks what wakes subscribers (the
// snapshot publisher, gossip): a new state, reason or detail, or an RTT
// that moved by more than 20 % or 5 ms since the last signal; not the
// jitter every successful probe's connect time has. The small moves still
// take a new seq, so a view taken later carries the latest RTT.
func TestSubscribeSignalsChangesNotRTTNoise(t *testing.T) {
	l := NewLocal(nil, nil)
	l.Configure(testConfig(1, 2))
	sub := l.Subscribe()
	signalled := func() bool {
		select {
		case <-sub:
			return true
		default:
			return false
		}
	}
	signalled() // Configure's
	steps := []struct {
		name   string
		result probe.Result
		signal bool
	}{
		{"first verdict", ok(10 * time.Millisecond), true},
		{"RTT jitter", ok(10*time.Millisecond + 300*time.Microsecond), false},
		{"more jitter", ok(10*time.Millisecond - 200*time.Microsecond), false},
		{"RTT tripled", ok(30 * time.Millisecond), true}, // EWMA 10 → 16 ms: +6 ms
		{"one failure, below fall", refused, true},       // the reason changed
		{"same failure again, down", refused, true},      // the state changed
		{"same failure a third time", refused, false},    // nothing changed
		{"back up", ok(16 * time.Millisecond), true},
	}
	var lastSeq uint64
	for _, s := range steps {
		l.Observe(targetA, s.result)
		if got := signalled(); got != s.signal {
			t.Errorf("%s: signalled %v, want %v", s.name, got, s.signal)
		}
		obs, _ := l.Get(targetA)
		if obs.Seq < lastSeq {
			t.Fatalf("%s: seq went back from %d to %d", s.name, lastSeq, obs.Seq)
		}
		lastSeq = obs.Seq
	}
	// Small moves still change the view: one taken now has the latest RTT.
	before, _ := l.Get(targetA)
	l.Observe(targetA, ok(16*time.Millisecond+500*time.Microsecond))
	if signalled() {
		t.Error("a 0.15 ms move signalled")
	}
	view, _ := l.View(before.Seq)
	if len(view) != 1 || view[0].RTT == before.RTT {
		t.Errorf("view since seq %d = %+v, want the target with its new RTT", before.Seq, view)
	}
}
