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
