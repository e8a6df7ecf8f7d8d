package health

import (
	"testing"
	"time"

	"meridian/config"
)

// cluster builds a Table for node "self" in region "r1" whose own verdict
// on targetA is own, with peers given as name → region.
func cluster(t *testing.T, own State, peers map[string]string, now *time.Time) *Table {
	t.Helper()
	l := NewLocal(nil, nil)
	l.Configure(testConfig(1, 1))
	switch own {
	case Up:
		l.Observe(targetA, ok(time.Millisecond))
	case Down:
		l.Observe(targetA, refused)
	}
	tb := NewTable(l, TableOptions{Self: "self", Region: "r1", StaleAfter: 30 * time.Second,
		Now: func() time.Time { return *now }})
	for name, region := range peers {
		tb.SetMember(Member{Name: name, Region: region, Alive: true})
	}
	return tb
}

// say makes peer report state for targetA at epoch 1 with the given seq.
func say(tb *Table, peer string, state State, seq uint64) bool {
	return tb.Merge(View{Origin: peer, Epoch: 1, Seq: seq, Obs: []Observation{{Target: targetA, State: state, Seq: seq, RTT: time.Duration(seq) * time.Millisecond}}})
}

var (
	majority = config.Quorum{Kind: config.QuorumMajority}
	all      = config.Quorum{Kind: config.QuorumAll}
	any1     = config.Quorum{Kind: config.QuorumAny}
)

func TestQuorum(t *testing.T) {
	peers := map[string]string{"r2a": "r2", "r2b": "r2", "r3a": "r3"}
	cases := []struct {
		name  string
		own   State
		peers map[string]State
		q     config.Quorum
		want  State
	}{
		{"all up", Up, map[string]State{"r2a": Up, "r2b": Up, "r3a": Up}, majority, Up},
		{"one region's firewall, majority", Down, map[string]State{"r2a": Up, "r2b": Up, "r3a": Up}, majority, Up},
		{"one region's firewall, all", Down, map[string]State{"r2a": Up, "r2b": Up, "r3a": Up}, all, Down},
		{"two regions down, majority", Down, map[string]State{"r2a": Down, "r2b": Down, "r3a": Up}, majority, Down},
		{"two regions down, any", Down, map[string]State{"r2a": Down, "r2b": Down, "r3a": Up}, any1, Up},
		{"split region votes down", Up, map[string]State{"r2a": Up, "r2b": Down, "r3a": Up}, all, Down},
		{"unknown regions do not vote", Unknown, map[string]State{"r3a": Down}, majority, Down},
		{"nobody knows", Unknown, nil, majority, Unknown},
		{"count 2 of 3", Down, map[string]State{"r2a": Up, "r2b": Up, "r3a": Up}, config.Quorum{Kind: config.QuorumCount, N: 2}, Up},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			tb := cluster(t, c.own, peers, &now)
			for p, s := range c.peers {
				say(tb, p, s, 1)
			}
			if got := tb.Decide(targetA, c.q); got.State != c.want {
				t.Errorf("decision %v (votes %+v), want %v", got.State, got.Regions, c.want)
			}
		})
	}
}

func TestMergeOrdering(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := cluster(t, Unknown, map[string]string{"p": "r2"}, &now)
	if !say(tb, "p", Down, 5) {
		t.Fatal("first view not merged")
	}
	if say(tb, "p", Up, 4) {
		t.Error("an older seq replaced a newer one")
	}
	if got := tb.Decide(targetA, majority).State; got != Down {
		t.Errorf("after an old seq: %v, want down", got)
	}
	// A restart: epoch 2 with seq 1 supersedes epoch 1 seq 5.
	tb.Merge(View{Origin: "p", Epoch: 2, Seq: 1, Obs: []Observation{{Target: targetA, State: Up, Seq: 1}}})
	if got := tb.Decide(targetA, majority).State; got != Up {
		t.Errorf("after a restart: %v, want up", got)
	}
	if tb.Merge(View{Origin: "p", Epoch: 1, Seq: 9, Obs: []Observation{{Target: targetA, State: Down, Seq: 9}}}) {
		t.Error("an old epoch was merged")
	}
	// A full view without the target drops it; one taken before a newer update does not.
	tb.Merge(View{Origin: "p", Epoch: 2, Seq: 0, Full: true})
	if got := tb.Decide(targetA, majority).State; got != Up {
		t.Errorf("a stale full view dropped a newer observation: %v", got)
	}
	tb.Merge(View{Origin: "p", Epoch: 2, Seq: 3, Full: true})
	if got := tb.Decide(targetA, majority).State; got != Unknown {
		t.Errorf("a full view without the target left it: %v", got)
	}
}

// TestStaleness: a dead peer keeps voting for stale_after by the receiver's
// clock, then its view stops counting and the node decides from its own.
func TestStaleness(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := cluster(t, Down, map[string]string{"p2": "r2", "p3": "r3"}, &now)
	say(tb, "p2", Up, 1)
	say(tb, "p3", Up, 1)
	if got := tb.Decide(targetA, majority).State; got != Up {
		t.Fatalf("healthy cluster: %v, want up", got)
	}
	tb.SetMember(Member{Name: "p2", Region: "r2", Alive: false})
	tb.SetMember(Member{Name: "p3", Region: "r3", Alive: false})
	now = now.Add(29 * time.Second)
	if got := tb.Decide(targetA, majority).State; got != Up {
		t.Errorf("partitioned 29s: %v, want the last knowledge (up)", got)
	}
	now = now.Add(2 * time.Second)
	if got := tb.Decide(targetA, majority).State; got != Down {
		t.Errorf("partitioned 31s: %v, want own region's view (down)", got)
	}
	tb.SetMember(Member{Name: "p2", Region: "r2", Alive: true})
	tb.SetMember(Member{Name: "p3", Region: "r3", Alive: true})
	if got := tb.Decide(targetA, majority); got.State != Up || len(got.Regions) != 3 {
		t.Errorf("healed: %+v, want up with 3 regions listed", got)
	}
}

func TestRegionRTTIsMedian(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := cluster(t, Unknown, map[string]string{"a": "r2", "b": "r2", "c": "r2"}, &now)
	say(tb, "a", Up, 10)
	say(tb, "b", Up, 30)
	say(tb, "c", Up, 20)
	d := tb.Decide(targetA, majority)
	for _, v := range d.Regions {
		if v.Region == "r2" && v.RTT != 20*time.Millisecond {
			t.Errorf("r2 RTT %s, want the median 20ms", v.RTT)
		}
	}
}

// TestSilentLivePeerGoesStale: a peer memberlist still sees alive, but that
// has sent nothing (not even a heartbeat) for stale_after by this node's
// clock, stops voting; its view stays for display, marked as not voting,
// and any view from it (an empty heartbeat) makes it vote again. A peer of
// an older protocol, which sends no heartbeats, keeps voting while alive.
func TestSilentLivePeerGoesStale(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := cluster(t, Down, nil, &now)
	tb.SetMember(Member{Name: "p2", Region: "r2", Alive: true, Heartbeats: true})
	tb.SetMember(Member{Name: "p3", Region: "r3", Alive: true, Heartbeats: true})
	tb.SetMember(Member{Name: "old", Region: "r4", Alive: true})
	say(tb, "p2", Up, 1)
	say(tb, "p3", Up, 1)
	say(tb, "old", Up, 1)
	if got := tb.Decide(targetA, all); got.State != Down || len(got.Regions) != 4 {
		t.Fatalf("fresh cluster: %+v, want down (r1) with 4 regions voting", got)
	}
	heartbeat := func(peer string, epoch uint64) { tb.Merge(View{Origin: peer, Epoch: epoch, Seq: 1}) }

	// p2 keeps beating (its seq unchanged: nothing changed); p3 falls silent.
	now = now.Add(20 * time.Second)
	heartbeat("p2", 1)
	now = now.Add(9 * time.Second)
	if got := tb.Decide(targetA, majority); got.State != Up || voters(got) != 4 {
		t.Errorf("p3 silent 29s: %+v, want up with 4 regions voting", got)
	}
	now = now.Add(2 * time.Second)
	got := tb.Decide(targetA, majority)
	if got.State != Up || voters(got) != 3 || vote(got, "r3").State != Unknown {
		t.Errorf("p3 silent 31s but alive: %+v, want up with r3 not voting", got)
	}
	for _, o := range tb.Observers(targetA) {
		if want := o.Node != "p3"; o.Voting != want {
			t.Errorf("observer %s voting %t, want %t", o.Node, o.Voting, want)
		}
	}
	for _, m := range tb.Members() {
		if want := m.Name == "p3"; m.Stale != want || !m.Alive {
			t.Errorf("member %+v: want alive, stale %t", m, want)
		}
	}
	if !tb.Silent("p3") || tb.Silent("p2") || tb.Silent("old") || tb.Silent("nobody") {
		t.Errorf("Silent: p3 %t p2 %t old %t nobody %t, want only p3", tb.Silent("p3"), tb.Silent("p2"), tb.Silent("old"), tb.Silent("nobody"))
	}
	// An old epoch's heartbeat (a delayed packet from before a restart) is
	// not a sign of life.
	tb.Merge(View{Origin: "p2", Epoch: 2, Seq: 1})
	tb.Merge(View{Origin: "p3", Epoch: 0, Seq: 1})
	if vote(tb.Decide(targetA, majority), "r3").State != Unknown {
		t.Error("an older epoch's heartbeat made p3 vote again")
	}
	heartbeat("p3", 1)
	if got := tb.Decide(targetA, majority); voters(got) != 3 || vote(got, "r3").State != Up {
		t.Errorf("p3 beating again: %+v, want r3 up (p2's view was cleared by its restart)", got)
	}
	if tb.Silent("p3") {
		t.Error("p3 still silent once heard again")
	}

	// Nobody beats for stale_after: the old-protocol peer alone still votes.
	now = now.Add(31 * time.Second)
	if got := tb.Decide(targetA, majority); voters(got) != 2 || vote(got, "r4").State != Up {
		t.Errorf("all silent: %+v, want r1 and the old-protocol r4 voting", got)
	}
}

// TestSilentPeerGoingStaleSignalsChanged: the table signals Changed when a
// live peer's view goes stale for silence, stale_after after its last word,
// so the snapshot is rebuilt without another change; and again when it is
// heard from once more.
func TestSilentPeerGoingStaleSignalsChanged(t *testing.T) {
	const staleAfter = 300 * time.Millisecond
	l := NewLocal(nil, nil)
	l.Configure(testConfig(1, 1))
	l.Observe(targetA, refused)
	tb := NewTable(l, TableOptions{Self: "self", Region: "r1", StaleAfter: staleAfter})
	tb.SetMember(Member{Name: "p2", Region: "r2", Alive: true, Heartbeats: true})
	tb.SetMember(Member{Name: "p3", Region: "r3", Alive: true, Heartbeats: true})
	heard := time.Now()
	say(tb, "p2", Up, 1)
	say(tb, "p3", Up, 1)
	if got := tb.Decide(targetA, majority).State; got != Up {
		t.Fatalf("decision %v, want up (two of three regions)", got)
	}
	drain(tb.Changed())
	select {
	case <-tb.Changed():
		if waited := time.Since(heard); waited < staleAfter {
			t.Errorf("Changed signalled %v after the last word, before stale_after (%v)", waited, staleAfter)
		}
	case <-time.After(staleAfter + 5*time.Second):
		t.Fatalf("no Changed signal within %v of stale_after", 5*time.Second)
	}
	if got := tb.Decide(targetA, majority).State; got != Down {
		t.Errorf("after stale_after: %v, want this node's own verdict (down)", got)
	}
	drain(tb.Changed())
	tb.Merge(View{Origin: "p2", Epoch: 1, Seq: 1}) // a heartbeat
	select {
	case <-tb.Changed():
	default:
		t.Error("no Changed signal when a stale peer was heard again")
	}
}

// voters counts the regions that vote in d.
func voters(d Decision) int {
	n := 0
	for _, v := range d.Regions {
		if v.State != Unknown {
			n++
		}
	}
	return n
}

// vote returns region's vote in d.
func vote(d Decision, region string) RegionVote {
	for _, v := range d.Regions {
		if v.Region == region {
			return v
		}
	}
	return RegionVote{Region: region}
}
