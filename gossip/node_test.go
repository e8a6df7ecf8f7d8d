package gossip

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"meridian/config"
	"meridian/health"
	"meridian/internal/certtest"
)

func TestClusterConverges(t *testing.T) {
	checkGoroutines(t)
	nodes := startCluster(t,
		spec{name: "use1-a", region: "us-east"}, spec{name: "use1-b", region: "us-east"},
		spec{name: "euw1-a", region: "eu-west"}, spec{name: "euw1-b", region: "eu-west"},
		spec{name: "aps1-a", region: "ap-south"}, spec{name: "aps1-b", region: "ap-south"},
	)
	origin := nodes[2]

	start := time.Now()
	origin.local.Observe(targetV4, down)
	eventually(t, 5*time.Second, "a down verdict reaching every node", func() bool {
		return sees(nodes, origin, targetV4, health.Down, 0, 1)
	})
	t.Logf("one change reached 5 nodes in %s", time.Since(start).Round(time.Millisecond))

	// A burst of changes to one target: the last one wins everywhere.
	origin.local.Observe(targetV4, up)
	origin.local.Observe(targetV4, down)
	origin.local.Observe(targetV4, up)
	eventually(t, 5*time.Second, "the last of a burst of changes reaching every node", func() bool {
		return sees(nodes, origin, targetV4, health.Up, 1, 0)
	})

	// The region's other node disagrees: a tie is not a majority.
	nodes[3].local.Observe(targetV4, down)
	eventually(t, 5*time.Second, "eu-west split 1:1", func() bool {
		return sees(nodes, nodes[3], targetV4, health.Down, 1, 1)
	})

	// A node joining later hears every node's view at once, not at the next
	// push/pull (an hour away in these tests), and they hear its view.
	late := startNode(t, spec{name: "sae1-a", region: "sa-east", join: []string{nodes[5].node.LocalAddr()}})
	late.local.Observe(targetV4, down)
	eventually(t, 5*time.Second, "the late node hearing everyone", func() bool {
		v := late.vote(targetV4, "eu-west")
		return v.Up == 1 && v.Down == 1
	})
	all := append(nodes, late)
	eventually(t, 5*time.Second, "everyone hearing the late node", func() bool {
		return sees(all, late, targetV4, health.Down, 0, 1)
	})

	// Draining travels in the node metadata.
	if err := nodes[1].node.SetDraining(true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the draining flag reaching a peer", func() bool {
		for _, nd := range nodes[0].node.ml.Load().Members() {
			if m, err := decodeMeta(nd.Meta); err == nil && nd.Name == nodes[1].name {
				return m.Draining
			}
		}
		return false
	})
	if got := nodes[0].node.membersGauge(); got != 7 {
		t.Errorf("members gauge %v, want 7", got)
	}
	if got := testutil.ToFloat64(nodes[0].node.metrics.received[0]); got == 0 {
		t.Error("no view counted as received")
	}
}

func TestRestartedNodeWins(t *testing.T) {
	checkGoroutines(t)
	nodes := startCluster(t,
		spec{name: "a", region: "r1"}, spec{name: "b", region: "r2"},
		spec{name: "k", region: "r3", skipLeave: true},
	)
	k := nodes[2]
	// Run k's seq up, ending up with a distinctive RTT.
	for range 3 {
		k.local.Observe(targetV4, down)
		k.local.Observe(targetV4, up)
	}
	rtt := k.vote(targetV4, "r3").RTT
	eventually(t, 5*time.Second, "k's last verdict reaching a and b", func() bool {
		return sees(nodes, k, targetV4, health.Up, 1, 0) && nodes[0].vote(targetV4, "r3").RTT == rtt && nodes[1].vote(targetV4, "r3").RTT == rtt
	})

	// Kill k (no Leave) and restart it at the same address: a new epoch, its
	// seq back at 1.
	addr := k.node.LocalAddr()
	k.stop(t)
	g := loopbackGossip()
	g.Bind = addr
	k2 := startNode(t, spec{name: "k", region: "r3", gossip: g, join: []string{nodes[0].node.LocalAddr()}})
	if k2.node.epoch <= k.node.epoch {
		t.Fatalf("epoch %d after restart, %d before", k2.node.epoch, k.node.epoch)
	}
	k2.local.Observe(targetV4, down)
	eventually(t, 10*time.Second, "the restarted node's verdict winning over its old one", func() bool {
		return sees(append(nodes[:2:2], k2), k2, targetV4, health.Down, 0, 1)
	})
	waitMembers(t, append(nodes[:2:2], k2))
}

func TestForeignNodesNeverMerge(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	keyA := writeKeyring(t, dir, "a", testKey(1))
	keyB := writeKeyring(t, dir, "b", testKey(2))
	encrypted := func(keyring, cluster string) config.Gossip {
		g := loopbackGossip()
		g.Keyring, g.Cluster = keyring, cluster
		return g
	}
	nodes := startCluster(t,
		spec{name: "m1", region: "r1", gossip: encrypted(keyA, "test")},
		spec{name: "m2", region: "r2", gossip: encrypted(keyA, "test")},
	)
	join := []string{nodes[0].node.LocalAddr(), nodes[1].node.LocalAddr()}
	intruders := []*tnode{
		startNode(t, spec{name: "wrong-key", region: "x1", gossip: encrypted(keyB, "test"), join: join}),
		startNode(t, spec{name: "other-cluster", region: "x2", gossip: encrypted(keyA, "other"), join: join}),
		startNode(t, spec{name: "unencrypted", region: "x3", gossip: encrypted("", "test"), join: join}),
	}
	for _, x := range intruders {
		x.local.Observe(targetV4, down)
	}
	eventually(t, 5*time.Second, "every intruder trying to join twice", func() bool {
		for _, x := range intruders {
			if testutil.ToFloat64(x.node.metrics.joinAttempts) < 2 {
				return false
			}
		}
		return true
	})
	never(t, 2*time.Second, "an intruder was merged", func() bool {
		for _, m := range nodes {
			for _, x := range intruders {
				if m.hasPeer(x.name) || m.vote(targetV4, x.region).Down > 0 || x.hasPeer(m.name) {
					return true
				}
			}
		}
		return false
	})
	// The cluster itself still works.
	nodes[0].local.Observe(targetV4, up)
	eventually(t, 5*time.Second, "a verdict inside the cluster", func() bool {
		return sees(nodes, nodes[0], targetV4, health.Up, 1, 0)
	})
}

func TestKeyRotationWithoutPartition(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	a, b := testKey(1), testKey(2)
	g := loopbackGossip()
	g.Keyring = writeKeyring(t, dir, "a", a)
	nodes := startCluster(t, spec{name: "n1", region: "r1", gossip: g}, spec{name: "n2", region: "r2", gossip: g}, spec{name: "n3", region: "r3", gossip: g})

	steps := []struct {
		name string
		keys [][]byte
	}{
		{"add B", [][]byte{a, b}},
		{"B primary", [][]byte{b, a}},
		{"remove A", [][]byte{b}},
	}
	flip := []health.State{health.Down, health.Up, health.Down}
	for i, step := range steps {
		file := writeKeyring(t, dir, step.name, step.keys...)
		for _, n := range nodes {
			if err := n.node.UpdateKeyring(file); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if got := n.node.keyring.GetPrimaryKey(); string(got) != string(step.keys[0]) {
				t.Fatalf("%s: wrong primary key", step.name)
			}
		}
		// A change made after the step still reaches everyone.
		origin := nodes[i]
		res := down
		if flip[i] == health.Up {
			res = up
			origin.local.Observe(targetV4, down)
		}
		origin.local.Observe(targetV4, res)
		want := [2]int{0, 1}
		if flip[i] == health.Up {
			want = [2]int{1, 0}
		}
		eventually(t, 5*time.Second, step.name+": a change propagating", func() bool {
			return sees(nodes, origin, targetV4, flip[i], want[0], want[1])
		})
		for _, n := range nodes {
			if len(n.node.Members()) != 3 || n.logs.count("gossip peer failed") > 0 {
				t.Fatalf("%s: %s sees %d members, %d failures", step.name, n.name, len(n.node.Members()), n.logs.count("gossip peer failed"))
			}
		}
	}
	// Only key B opens the cluster now.
	gb := loopbackGossip()
	gb.Keyring = writeKeyring(t, dir, "b only", b)
	newcomer := startNode(t, spec{name: "n4", region: "r4", gossip: gb, join: []string{nodes[2].node.LocalAddr()}})
	waitMembers(t, append(nodes, newcomer))
}

func TestTLSCluster(t *testing.T) {
	checkGoroutines(t)
	ca := certtest.New(t)
	tlsGossip := func(ca *certtest.CA, name string) config.Gossip {
		g := loopbackGossip()
		g.Transport = "tls"
		g.TLSFiles = nodeCert(t, ca, name)
		return g
	}
	nodes := startCluster(t,
		spec{name: "t1", region: "r1", gossip: tlsGossip(ca, "t1")},
		spec{name: "t2", region: "r2", gossip: tlsGossip(ca, "t2")},
		spec{name: "t3", region: "r3", gossip: tlsGossip(ca, "t3")},
	)
	nodes[1].local.Observe(targetV4, down)
	eventually(t, 5*time.Second, "a verdict over TLS", func() bool {
		return sees(nodes, nodes[1], targetV4, health.Down, 0, 1)
	})

	// A node whose certificate our CA did not sign refuses to start when
	// given our CA file (it could not be verified by anyone).
	other := certtest.New(t)
	mismatched := tlsGossip(other, "y")
	mismatched.CA = filepath.Join(ca.Dir, "ca.pem")
	local := health.NewLocal(nil, nil)
	y, err := New(Options{Config: mismatched, Name: "y", Region: "y1", Local: local,
		Table: health.NewTable(local, health.TableOptions{Self: "y", Region: "y1"})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := y.Run(ctx); err == nil || !strings.Contains(err.Error(), "signed by unknown authority") {
		t.Errorf("Run with a certificate from another CA: %v, want an unknown authority error", err)
	}

	// A node of another CA (consistent in itself) never gets in.
	foreign := tlsGossip(other, "x")
	x := startNode(t, spec{name: "x", region: "x1", gossip: foreign, join: []string{nodes[0].node.LocalAddr()}})
	x.local.Observe(targetV4, down)
	eventually(t, 5*time.Second, "the foreign node trying to join twice", func() bool {
		return testutil.ToFloat64(x.node.metrics.joinAttempts) >= 2
	})
	never(t, 2*time.Second, "the foreign node was merged", func() bool {
		for _, m := range nodes {
			if m.hasPeer("x") || m.vote(targetV4, "x1").Down > 0 || x.hasPeer(m.name) {
				return true
			}
		}
		return false
	})
}

func TestSilentNodeGoesStale(t *testing.T) {
	checkGoroutines(t)
	const staleAfter = time.Second
	nodes := startCluster(t,
		spec{name: "a", region: "r1", staleAfter: staleAfter},
		spec{name: "b", region: "r2", staleAfter: staleAfter},
		spec{name: "c", region: "r3", staleAfter: staleAfter},
	)
	c := nodes[2]
	c.local.Observe(targetV4, up)
	eventually(t, 5*time.Second, "c's verdict reaching a and b", func() bool {
		return sees(nodes, c, targetV4, health.Up, 1, 0)
	})
	stopped := time.Now()
	c.stop(t)
	eventually(t, 10*time.Second, "c's region no longer voting", func() bool {
		return sees(nodes[:2], c, targetV4, health.Unknown, 0, 0)
	})
	if elapsed := time.Since(stopped); elapsed < staleAfter {
		t.Errorf("c stopped voting %s after it stopped, before stale_after (%s)", elapsed, staleAfter)
	}
	for _, n := range nodes[:2] {
		if d := n.table.Decide(targetV4, anyQuorum); d.State != health.Unknown {
			t.Errorf("%s decides %s without any voter", n.name, d.State)
		}
	}
}

func TestIncompatiblePeerIgnored(t *testing.T) {
	n, _ := newTestNode(t, loopbackGossip(), nil)
	ev := events{n}
	future := &memberlist.Node{Name: "future", Addr: net.IPv4(127, 0, 0, 2), Port: 7946, Meta: meta{Major: protocolMajor + 1, Region: "r9"}.encode()}
	ev.NotifyJoin(future)
	v := health.View{Origin: "future", Region: "r9", Epoch: 1, Obs: []health.Observation{{Target: targetV4, State: health.Down, Seq: 1}}}
	b, _ := Encode(v)
	n.receive(b)
	if m := n.opts.Table.Members(); len(m) != 1 {
		t.Errorf("table members %+v, want only this node", m)
	}
	// Upgraded to a compatible version: merged from then on.
	future.Meta = meta{Major: protocolMajor, Region: "r9"}.encode()
	ev.NotifyUpdate(future)
	n.receive(b)
	if d := n.opts.Table.Decide(targetV4, anyQuorum); d.State != health.Down {
		t.Errorf("decision %+v after the peer became compatible", d)
	}
	// Downgraded again: its view stops voting once stale (1 s here).
	future.Meta = meta{Major: protocolMajor + 1, Region: "r9"}.encode()
	ev.NotifyUpdate(future)
	eventually(t, 5*time.Second, "the incompatible peer's view going stale", func() bool {
		return n.opts.Table.Decide(targetV4, anyQuorum).State == health.Unknown
	})
	ev.NotifyLeave(future)
	if n.others.Load() != 0 {
		t.Errorf("%d others after the leave", n.others.Load())
	}
}

// TestHungNodeGoesStale: a node whose delegate stops sending (no
// broadcasts, push/pull state or heartbeats) while memberlist keeps it
// alive stops voting at every other node stale_after after its last word,
// its view kept for display as not voting; when it speaks again it votes
// again.
func TestHungNodeGoesStale(t *testing.T) {
	checkGoroutines(t)
	const staleAfter = 1500 * time.Millisecond
	nodes := startCluster(t,
		spec{name: "a", region: "r1", staleAfter: staleAfter},
		spec{name: "b", region: "r2", staleAfter: staleAfter},
		spec{name: "c", region: "r3", staleAfter: staleAfter},
	)
	c := nodes[2]
	c.local.Observe(targetV4, up)
	eventually(t, 5*time.Second, "c's verdict reaching a and b", func() bool {
		return sees(nodes, c, targetV4, health.Up, 1, 0)
	})
	muted := time.Now()
	c.node.mute.Store(true)
	eventually(t, staleAfter+5*time.Second, "c's region no longer voting at a and b", func() bool {
		return sees(nodes, c, targetV4, health.Unknown, 0, 0)
	})
	// Its last heartbeat may have left just before the mute, so allow for
	// one heartbeat interval (stale_after/3) less.
	if elapsed := time.Since(muted); elapsed < staleAfter*2/3 {
		t.Errorf("c stopped voting %s after it fell silent, before stale_after (%s)", elapsed, staleAfter)
	}
	for _, n := range nodes[:2] {
		if !n.hasMember("c") {
			t.Fatalf("%s: memberlist no longer sees c alive: the test needs it alive", n.name)
		}
		obs := n.table.Observers(targetV4)
		i := slices.IndexFunc(obs, func(o health.NodeObservation) bool { return o.Node == "c" })
		if i < 0 || obs[i].Voting || obs[i].State != health.Up {
			t.Errorf("%s: observers %+v, want c's up kept for display, not voting", n.name, obs)
		}
		if m := n.table.Members(); !slices.ContainsFunc(m, func(m health.Member) bool { return m.Name == "c" && m.Alive && m.Stale }) {
			t.Errorf("%s: members %+v, want c alive and stale", n.name, m)
		}
	}
	c.node.mute.Store(false)
	eventually(t, 5*time.Second, "c voting again once it speaks", func() bool {
		return sees(nodes, c, targetV4, health.Up, 1, 0)
	})
}

// TestQuietClusterStaysFresh: a healthy cluster in which nothing changes
// (no broadcasts, push/pull an hour away) keeps every node's view voting
// for several stale_after, thanks to heartbeats alone.
func TestQuietClusterStaysFresh(t *testing.T) {
	checkGoroutines(t)
	const staleAfter = time.Second
	nodes := startCluster(t,
		spec{name: "a", region: "r1", staleAfter: staleAfter},
		spec{name: "b", region: "r2", staleAfter: staleAfter},
		spec{name: "c", region: "r3", staleAfter: staleAfter},
	)
	for _, n := range nodes {
		n.local.Observe(targetV4, up)
	}
	everyoneVotes := func() bool {
		for _, n := range nodes {
			if d := n.table.Decide(targetV4, anyQuorum); len(d.Regions) != 3 || d.Regions[0].State != health.Up ||
				d.Regions[1].State != health.Up || d.Regions[2].State != health.Up {
				return false
			}
		}
		return true
	}
	eventually(t, 5*time.Second, "every region voting up at every node", everyoneVotes)
	sentBefore := testutil.ToFloat64(nodes[0].node.metrics.sent[kindHeartbeat])
	never(t, 5*staleAfter, "a quiet node's view went stale", func() bool { return !everyoneVotes() })
	// a sends to 2 peers every stale_after/3: about 30 in 5 stale_after.
	if sent := testutil.ToFloat64(nodes[0].node.metrics.sent[kindHeartbeat]) - sentBefore; sent < 20 || sent > 40 {
		t.Errorf("a sent %v heartbeats in %s, want about 30", sent, 5*staleAfter)
	}
	if got := testutil.ToFloat64(nodes[1].node.metrics.received[kindHeartbeat]); got < 20 {
		t.Errorf("b received %v heartbeats, want at least 20", got)
	}
}

// hasMember reports whether memberlist at tn sees name alive.
func (tn *tnode) hasMember(name string) bool {
	return slices.ContainsFunc(tn.node.Members(), func(m health.Member) bool { return m.Name == name })
}
