package main

import (
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkClusterFailover is issue 4's convergence figure: three regions,
// one `meridian serve` process each, gossip profile "lan", an mTLS https
// check at interval 1 s, timeout 500 ms, fall 2. Twenty times it stops one
// backend at a random point of the probe cycle and measures the time until
// every node's DNS answers exclude it (each node polled every 10 ms), then
// restarts it and waits until every node answers it again. The bound to
// meet is interval × fall + timeout + 1 s = 3.5 s. It ignores b.N; run it
// once:
//
//	go test -run '^$' -bench ClusterFailover -benchtime 1x ./cmd/meridian
func BenchmarkClusterFailover(b *testing.B) {
	nodes, backends := startClusterProcesses(b, clusterOpts{quorum: "majority", profile: "lan", interval: "1s", timeout: "500ms"})
	victim := backends["127.0.0.2"]
	all, rest := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, []string{"127.0.0.1", "127.0.0.3"}
	var took []time.Duration
	phase := rand.New(rand.NewPCG(4, 2))
	b.ResetTimer()
	for range failoverTrials {
		time.Sleep(time.Duration(phase.Int64N(int64(time.Second))))
		victim.Stop()
		took = append(took, clusterWait(b, nodes, rest, "the stopped backend removed everywhere"))
		victim.Start()
		clusterWait(b, nodes, all, "the restarted backend back everywhere")
	}
	b.StopTimer()
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
	b.ReportMetric(ms(took[len(took)-1]), "max-ms")
	b.ReportMetric(ms(took[0]), "min-ms")
	b.Logf("removal from every node's answers, sorted: %v", took)
}

// clusterWait polls every node's A answers for api.example.test every
// failoverPoll until all of them are want (sorted), and returns how long
// that took.
func clusterWait(b *testing.B, nodes []*clusterNode, want []string, what string) time.Duration {
	b.Helper()
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	q := new(dns.Msg).SetQuestion("api.example.test.", dns.TypeA)
	done := make([]bool, len(nodes))
	start := time.Now()
	for time.Since(start) < failoverDeadline {
		pending := 0
		for i, n := range nodes {
			if done[i] {
				continue
			}
			var got []string
			if r, _, err := c.Exchange(q, net.JoinHostPort("127.0.0.1", strconv.Itoa(n.dnsPort))); err == nil {
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok {
						got = append(got, a.A.String())
					}
				}
			}
			slices.Sort(got)
			if done[i] = slices.Equal(got, want); !done[i] {
				pending++
			}
		}
		if pending == 0 {
			return time.Since(start)
		}
		time.Sleep(failoverPoll)
	}
	b.Fatalf("%s: not within %v", what, failoverDeadline)
	return 0
}
