package gossip

import (
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"meridian/health"
)

// BenchmarkCluster50 is issue 4's scale figure: 50 in-process nodes on
// loopback (5 regions of 10, profile "lan"), every byte they send counted
// at the transport (UDP packets and TCP streams, memberlist's own traffic
// included). It reports the time for one observation change to reach all
// 49 other nodes (p50 and max over 10 changes), and the bytes each node
// sends per second at rest (20 s, one target) and under churn (20 s, 5
// changes a second cluster-wide). It ignores b.N; run it once:
//
//	go test -run '^$' -bench Cluster50 -benchtime 1x ./gossip
func BenchmarkCluster50(b *testing.B) {
	const size, regions = 50, 5
	var sent atomic.Int64
	nodes := make([]*tnode, 0, size)
	for i := range size {
		s := spec{name: "n" + string(rune('A'+i/26)) + string(rune('a'+i%26)), region: "r" + string(rune('1'+i%regions))}
		s.gossip = loopbackGossip()
		s.gossip.Profile = "lan"
		s.transport = countBytes(&sent)
		if i > 0 {
			s.join = []string{nodes[0].node.LocalAddr()}
		}
		nodes = append(nodes, startNode(b, s))
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !allSee(nodes, size) {
		if time.Now().After(deadline) {
			b.Fatal("50 nodes did not converge on membership in 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.ResetTimer()

	// One change at a time, from a different origin each time.
	var took []time.Duration
	for i := range 10 {
		origin := nodes[(7*i+3)%size]
		res, state := up, health.Up
		if i%2 == 0 {
			res, state = down, health.Down
		}
		start := time.Now()
		origin.local.Observe(targetV4, res)
		for !everyoneHas(nodes, origin, state) {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("change %d did not reach every node in 30 s", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(took[len(took)/2]), "converge-p50-ms")
	b.ReportMetric(ms(took[len(took)-1]), "converge-max-ms")

	rate := func(d time.Duration, during func()) float64 {
		before, start := sent.Load(), time.Now()
		during()
		return float64(sent.Load()-before) / time.Since(start).Seconds() / size
	}
	atRest := rate(20*time.Second, func() { time.Sleep(20 * time.Second) })
	rnd := rand.New(rand.NewPCG(5, 0))
	churn := rate(20*time.Second, func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for range 100 {
			<-tick.C
			n := nodes[rnd.IntN(size)]
			if rnd.IntN(2) == 0 {
				n.local.Observe(targetV4, down)
			} else {
				n.local.Observe(targetV4, up)
			}
		}
	})
	b.ReportMetric(atRest, "B/s/node-rest")
	b.ReportMetric(churn, "B/s/node-churn")
	b.Logf("one change reached all %d nodes in %v (sorted)", size, took)
}

// allSee reports whether every node sees n members.
func allSee(nodes []*tnode, n int) bool {
	for _, tn := range nodes {
		if len(tn.node.Members()) != n {
			return false
		}
	}
	return true
}

// everyoneHas reports whether every node but origin holds origin's latest
// observation of targetV4 in the given state.
func everyoneHas(nodes []*tnode, origin *tnode, state health.State) bool {
	for _, n := range nodes {
		if n == origin {
			continue
		}
		found := false
		for _, o := range n.table.Observers(targetV4) {
			if o.Node == origin.name {
				found = o.State == state
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// countBytes returns a transport hook adding every byte a node sends (UDP
// packets, and TCP streams it dials or accepts) to total.
func countBytes(total *atomic.Int64) func(*Node) func(memberlist.Transport) memberlist.Transport {
	return func(*Node) func(memberlist.Transport) memberlist.Transport {
		return func(inner memberlist.Transport) memberlist.Transport {
			t := &countingTransport{Transport: inner, total: total, streams: make(chan net.Conn), done: make(chan struct{})}
			t.wg.Go(t.forwardStreams)
			return t
		}
	}
}

type countingTransport struct {
	memberlist.Transport
	total   *atomic.Int64
	streams chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.total.Add(int64(len(b)))
	return t.Transport.WriteTo(b, addr)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.Transport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{c, t.total}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *countingTransport) forwardStreams() {
	for {
		select {
		case <-t.done:
			return
		case c := <-t.Transport.StreamCh():
			select {
			case t.streams <- countingConn{c, t.total}:
			case <-t.done:
				c.Close()
				return
			}
		}
	}
}

func (t *countingTransport) Shutdown() error {
	err := t.Transport.Shutdown()
	close(t.done)
	t.wg.Wait()
	return err
}

type countingConn struct {
	net.Conn
	total *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.total.Add(int64(n))
	return n, err
}
