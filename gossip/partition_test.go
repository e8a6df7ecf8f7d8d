package gossip

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"meridian/config"
	"meridian/health"
)

// firewall is a test network between gossip nodes on loopback: a cut pair
// of addresses exchanges no packets and opens no streams, in either
// direction, as a partition between two regions would.
type firewall struct {
	mu  sync.Mutex
	cut map[[2]string]bool
}

func newFirewall() *firewall { return &firewall{cut: map[[2]string]bool{}} }

// partition cuts a from every address in others (or heals, with on false).
func (f *firewall) partition(a string, others []string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range others {
		f.cut[[2]string{a, b}], f.cut[[2]string{b, a}] = on, on
	}
}

func (f *firewall) blocked(from, to string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut[[2]string{from, to}]
}

// wrap returns a Node transport hook that sends through f.
func (f *firewall) wrap(n *Node) func(memberlist.Transport) memberlist.Transport {
	return func(inner memberlist.Transport) memberlist.Transport {
		ft := &firewalledTransport{Transport: inner, fw: f, node: n, packets: make(chan *memberlist.Packet), done: make(chan struct{})}
		ft.wg.Go(ft.filterPackets)
		return ft
	}
}

// firewalledTransport drops what its firewall cuts: outgoing packets and
// dials to a cut peer, incoming packets from one. Streams are only ever
// opened by DialTimeout, so cutting dials on both sides cuts them all.
type firewalledTransport struct {
	memberlist.Transport
	fw      *firewall
	node    *Node
	packets chan *memberlist.Packet
	done    chan struct{}
	wg      sync.WaitGroup
}

var errCut = errors.New("test firewall: partitioned")

func (t *firewalledTransport) self() string { return t.node.LocalAddr() }

func (t *firewalledTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.fw.blocked(t.self(), addr) {
		return time.Now(), nil // lost on the way
	}
	return t.Transport.WriteTo(b, addr)
}

func (t *firewalledTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.fw.blocked(t.self(), addr) {
		return nil, errCut
	}
	return t.Transport.DialTimeout(addr, timeout)
}

func (t *firewalledTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// filterPackets forwards the inner transport's packets but those from a
// cut peer, until Shutdown.
func (t *firewalledTransport) filterPackets() {
	for {
		select {
		case <-t.done:
			return
		case p := <-t.Transport.PacketCh():
			if t.fw.blocked(p.From.String(), t.self()) {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.done:
				return
			}
		}
	}
}

func (t *firewalledTransport) Shutdown() error {
	err := t.Transport.Shutdown()
	close(t.done)
	t.wg.Wait()
	return err
}

// TestRegionFirewallNeedsQuorum: probes failing from one region only (its
// own firewall, say) do not take an endpoint down under "majority" but do
// under "all", at every node.
func TestRegionFirewallNeedsQuorum(t *testing.T) {
	checkGoroutines(t)
	nodes := startCluster(t,
		spec{name: "a", region: "r1"}, spec{name: "b", region: "r2"}, spec{name: "c", region: "r3"})
	nodes[0].local.Observe(targetV4, down)
	nodes[1].local.Observe(targetV4, up)
	nodes[2].local.Observe(targetV4, up)
	majority := config.Quorum{Kind: config.QuorumMajority}
	all := config.Quorum{Kind: config.QuorumAll}
	eventually(t, 5*time.Second, "every node hearing every region's vote", func() bool {
		for _, n := range nodes {
			d := n.table.Decide(targetV4, anyQuorum)
			if len(d.Regions) != 3 || voters(d) != 3 {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if got := n.table.Decide(targetV4, majority).State; got != health.Up {
			t.Errorf("%s: majority decides %s with one region of three seeing down, want up", n.name, got)
		}
		if got := n.table.Decide(targetV4, all).State; got != health.Down {
			t.Errorf("%s: all decides %s with one region of three seeing down, want down", n.name, got)
		}
	}
}

// voters counts the regions that vote in d.
func voters(d health.Decision) int {
	n := 0
	for _, v := range d.Regions {
		if v.State != health.Unknown {
			n++
		}
	}
	return n
}

// TestPartitionedRegionKeepsAnsweringAndHeals cuts one region off: it goes
// on deciding from what it last heard until that is stale, then from its
// own region's view, never from nothing; the others stop counting it after
// stale_after. When the partition heals, everyone converges again.
func TestPartitionedRegionKeepsAnsweringAndHeals(t *testing.T) {
	checkGoroutines(t)
	const staleAfter = 2 * time.Second
	fw := newFirewall()
	var nodes []*tnode
	for i, s := range []spec{{name: "a", region: "r1"}, {name: "b", region: "r2"}, {name: "c", region: "r3"}} {
		s.staleAfter = staleAfter
		s.transport = fw.wrap
		// memberlist declares an unreachable peer dead after its suspicion
		// timeout, up to SuspicionMaxTimeoutMult times the least one when
		// nobody confirms (no one can, in a partition): shortened here.
		s.tune = func(c *memberlist.Config) { c.SuspicionMaxTimeoutMult = 2 }
		if i > 0 {
			s.join = []string{nodes[0].node.LocalAddr()}
		}
		nodes = append(nodes, startNode(t, s))
	}
	waitMembers(t, nodes)
	for _, n := range nodes {
		n.local.Observe(targetV4, up)
	}
	majority := config.Quorum{Kind: config.QuorumMajority}
	eventually(t, 5*time.Second, "every node hearing three up votes", func() bool {
		for _, n := range nodes {
			if d := n.table.Decide(targetV4, majority); d.State != health.Up || voters(d) != 3 {
				return false
			}
		}
		return true
	})

	a, b, c := nodes[0], nodes[1], nodes[2]
	fw.partition(c.node.LocalAddr(), []string{a.node.LocalAddr(), b.node.LocalAddr()}, true)
	// The backend fails as r1 and r2 see it; c cannot hear that.
	a.local.Observe(targetV4, down)
	b.local.Observe(targetV4, down)
	eventually(t, 5*time.Second, "a and b deciding down", func() bool {
		return a.table.Decide(targetV4, majority).State == health.Down && b.table.Decide(targetV4, majority).State == health.Down
	})
	// c keeps its last knowledge, then its own region's view: it never
	// decides from nothing.
	eventually(t, 30*time.Second, "c deciding from its own region alone", func() bool {
		d := c.table.Decide(targetV4, majority)
		if d.State == health.Unknown {
			t.Fatalf("the partitioned node decided from nothing: %+v", d)
		}
		return d.State == health.Up && voters(d) == 1
	})
	eventually(t, 30*time.Second, "a and b no longer counting c", func() bool {
		return voters(a.table.Decide(targetV4, majority)) == 2 && voters(b.table.Decide(targetV4, majority)) == 2
	})

	fw.partition(c.node.LocalAddr(), []string{a.node.LocalAddr(), b.node.LocalAddr()}, false)
	eventually(t, 30*time.Second, "the healed cluster converging", func() bool {
		for _, n := range nodes {
			d := n.table.Decide(targetV4, majority)
			if d.State != health.Down || voters(d) != 3 {
				return false
			}
		}
		return true
	})
}
