package health

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"meridian/config"
	"meridian/probe"
)

// twoRegions is a Table where this node (region r1) sees targetA up and
// peer p2 (region r2) has said nothing yet.
func twoRegions(t *testing.T) (*Table, *config.Config) {
	t.Helper()
	now := time.Unix(1000, 0)
	return cluster(t, Up, map[string]string{"p2": "r2"}, &now), testConfig(1, 1)
}

// TestChanges checks the verdict changes logged between two snapshots:
// only checked endpoints whose state moved, with the votes behind the new
// state, and nothing for endpoints that only one snapshot holds.
func TestChanges(t *testing.T) {
	tb, cfg := twoRegions(t)
	say(tb, "p2", Up, 1)
	before := NewSnapshot(cfg, tb)
	if got := Changes(before, NewSnapshot(cfg, tb)); len(got) != 0 {
		t.Errorf("changes between equal snapshots: %+v", got)
	}
	say(tb, "p2", Down, 2) // 1 of 2 regions up: below a majority
	after := NewSnapshot(cfg, tb)
	got := Changes(before, after)
	if len(got) != 1 {
		t.Fatalf("changes %+v, want one for endpoint a", got)
	}
	c := got[0]
	if c.Service != "api.example.test." || c.Endpoint != "a" || c.From != Up || c.To != Down {
		t.Errorf("change %+v, want api.example.test./a from up to down", c)
	}
	if want := "r1=up(1 up/0 down) r2=down(0 up/1 down)"; c.Votes() != want {
		t.Errorf("votes %q, want %q", c.Votes(), want)
	}

	// An endpoint added by a reload is not a change, whatever its state.
	grown := testConfig(1, 1)
	grown.Services[0].Endpoints = append(grown.Services[0].Endpoints, config.Endpoint{
		Name: "c", Address: targetA.Address.String(), Addr: targetA.Address, Check: "api"})
	if got := Changes(after, NewSnapshot(grown, tb)); len(got) != 0 {
		t.Errorf("changes after adding an endpoint: %+v, want none", got)
	}
}

// TestExportGauges checks meridian_endpoint_up and
// meridian_endpoint_region_up: one series per endpoint (unchecked ones up),
// one per voting region, and removed endpoints' series dropped.
func TestExportGauges(t *testing.T) {
	tb, cfg := twoRegions(t)
	say(tb, "p2", Down, 1)
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_endpoint_up", Help: "h"}, []string{"service", "endpoint"})
	regionUp := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_endpoint_region_up", Help: "h"},
		[]string{"service", "endpoint", "region"})
	s := NewSnapshot(cfg, tb)
	s.ExportUp(up)
	s.ExportRegionUp(regionUp)
	const svc = "api.example.test."
	for ep, want := range map[string]float64{"a": 0, "b": 1} {
		if got := testutil.ToFloat64(up.WithLabelValues(svc, ep)); got != want {
			t.Errorf("meridian_endpoint_up{endpoint=%q} = %v, want %v", ep, got, want)
		}
	}
	for region, want := range map[string]float64{"r1": 1, "r2": 0} {
		if got := testutil.ToFloat64(regionUp.WithLabelValues(svc, "a", region)); got != want {
			t.Errorf("meridian_endpoint_region_up{region=%q} = %v, want %v", region, got, want)
		}
	}
	if n := testutil.CollectAndCount(regionUp); n != 2 {
		t.Errorf("meridian_endpoint_region_up has %d series, want 2 (the unchecked endpoint has none)", n)
	}

	// A reload drops endpoint a: its series go.
	shrunk := testConfig(1, 1)
	shrunk.Services[0].Endpoints = shrunk.Services[0].Endpoints[1:]
	s = NewSnapshot(shrunk, tb)
	s.ExportUp(up)
	s.ExportRegionUp(regionUp)
	if n := testutil.CollectAndCount(up); n != 1 {
		t.Errorf("meridian_endpoint_up has %d series after endpoint a was removed, want 1", n)
	}
	if n := testutil.CollectAndCount(regionUp); n != 0 {
		t.Errorf("meridian_endpoint_region_up has %d series after endpoint a was removed, want 0", n)
	}
}

// TestBuildStatus checks /api/v1/status's document: members, each
// endpoint's verdict with every region's vote and every node's
// observation, and "unchecked" for an endpoint without a check.
func TestBuildStatus(t *testing.T) {
	tb, cfg := twoRegions(t)
	tb.Merge(View{Origin: "p2", Epoch: 1, Seq: 1, Obs: []Observation{{Target: targetA, State: Down, Seq: 1,
		Reason: probe.ReasonTLSBadCertificate, Detail: "tls: server rejected our client certificate"}}})
	cfg.Node = config.Node{Name: "self", Region: "r1"}
	cfg.Services[0].Policy, cfg.Services[0].Quorum = "weighted", "any"
	cfg.Services[0].QuorumRule = config.Quorum{Kind: config.QuorumAny}
	now := time.Unix(2000, 0).UTC()
	st := BuildStatus(cfg, NewSnapshot(cfg, tb), tb, now)

	if st.Node != "self" || st.Region != "r1" || !st.Time.Equal(now) {
		t.Errorf("header %q %q %v", st.Node, st.Region, st.Time)
	}
	if want := []Member{{Name: "p2", Region: "r2", Alive: true}, {Name: "self", Region: "r1", Alive: true}}; !slices.Equal(st.Members, want) {
		t.Errorf("members %+v, want %+v", st.Members, want)
	}
	if len(st.Services) != 1 || len(st.Services[0].Endpoints) != 2 {
		t.Fatalf("services %+v, want one with two endpoints", st.Services)
	}
	svc := st.Services[0]
	if svc.Name != "api.example.test." || svc.Policy != "weighted" || svc.Quorum != "any" {
		t.Errorf("service %q %q %q", svc.Name, svc.Policy, svc.Quorum)
	}
	a, b := svc.Endpoints[0], svc.Endpoints[1]
	if a.State != "up" || a.Target != targetA.String() || a.Address != "192.0.2.1" {
		t.Errorf("endpoint a: state %q target %q address %q, want up (quorum any) on %s", a.State, a.Target, a.Address, targetA)
	}
	wantVotes := []VoteStatus{{Region: "r1", State: "up", Up: 1, RTTms: 1}, {Region: "r2", State: "down", Down: 1}}
	if !slices.Equal(a.Votes, wantVotes) {
		t.Errorf("votes %+v, want %+v", a.Votes, wantVotes)
	}
	if len(a.Observers) != 2 || a.Observers[0].Node != "self" || a.Observers[1].Node != "p2" ||
		a.Observers[1].Reason != string(probe.ReasonTLSBadCertificate) || !a.Observers[1].Voting ||
		a.Observers[1].Detail != "tls: server rejected our client certificate" {
		t.Errorf("observers %+v, want self then p2 (voting, with its reason and detail)", a.Observers)
	}
	if b.State != "unchecked" || b.Target != "" || len(b.Votes) != 0 {
		t.Errorf("endpoint b %+v, want unchecked without target or votes", b)
	}

	// The JSON keeps its documented keys.
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"members":`, `"endpoints":`, `"votes":`, `"observers":`, `"rtt_ms":1`,
		`"reason":"tls_bad_certificate"`, `"state":"unchecked"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("status JSON lacks %s:\n%s", key, data)
		}
	}
}

// TestDeadPeerGoingStaleSignalsChanged checks that the table signals
// Changed when a dead peer's view stops voting, stale_after after its death
// by this node's clock, so that the snapshot is rebuilt without waiting for
// another change.
func TestDeadPeerGoingStaleSignalsChanged(t *testing.T) {
	const staleAfter = 300 * time.Millisecond
	l := NewLocal(nil, nil)
	l.Configure(testConfig(1, 1))
	l.Observe(targetA, refused)
	tb := NewTable(l, TableOptions{Self: "self", Region: "r1", StaleAfter: staleAfter})
	tb.SetMember(Member{Name: "p2", Region: "r2", Alive: true})
	tb.SetMember(Member{Name: "p3", Region: "r3", Alive: true})
	say(tb, "p2", Up, 1)
	say(tb, "p3", Up, 1)
	if got := tb.Decide(targetA, majority).State; got != Up {
		t.Fatalf("decision %v, want up (two of three regions)", got)
	}
	drain(tb.Changed())

	died := time.Now()
	tb.SetMember(Member{Name: "p2", Region: "r2", Alive: false})
	tb.SetMember(Member{Name: "p3", Region: "r3", Alive: false})
	select {
	case <-tb.Changed():
	default:
		t.Fatal("no Changed signal when peers died")
	}
	if got := tb.Decide(targetA, majority).State; got != Up {
		t.Errorf("just after the peers died: %v, want their last word (up) until stale", got)
	}
	select {
	case <-tb.Changed():
		if waited := time.Since(died); waited < staleAfter {
			t.Errorf("Changed signalled %v after the deaths, before stale_after (%v)", waited, staleAfter)
		}
	case <-time.After(staleAfter + 5*time.Second):
		t.Fatalf("no Changed signal within %v of stale_after", 5*time.Second)
	}
	if got := tb.Decide(targetA, majority).State; got != Down {
		t.Errorf("after stale_after: %v, want this node's own verdict (down)", got)
	}
}

// drain empties a coalescing channel.
func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
