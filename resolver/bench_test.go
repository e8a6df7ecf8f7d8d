package resolver

import (
	"math/bits"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// latencyBenchConfig adds a latency service with three regions, client
// networks and locations to the weighted one.
const latencyBenchConfig = weightedConfig + `
[regions.r2]
location = [53.35, -6.26]
networks = ["10.2.0.0/16"]
[regions.r3]
location = [19.08, 72.88]
networks = ["10.3.0.0/16"]
[[services]]
name = "lat.example.test."
policy = "latency"
endpoints = [
  { name = "a", region = "r1", address = "192.0.2.1" },
  { name = "b", region = "r2", address = "192.0.2.2" },
  { name = "c", region = "r3", address = "192.0.2.3" },
]
`

func benchServer(b *testing.B) *Server {
	b.Helper()
	return benchServerWith(b, "", nil)
}

// benchServerWith is benchServer with extra configuration and a recorder.
func benchServerWith(b *testing.B, extra string, rec AnswerRecorder) *Server {
	b.Helper()
	s, err := New(mustConfig(b, latencyBenchConfig+extra), Options{Recorder: rec})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// countingRecorder is a recorder as cheap as a real one can be: atomic
// counts of answers, answers with a client subnet and answers per endpoint
// index.
type countingRecorder struct {
	answers, withECS atomic.Uint64
	ends             [64]atomic.Uint64
}

func (c *countingRecorder) RecordAnswer(_ int, _ netip.Addr, ecs netip.Prefix, ends uint64, _ uint32) {
	c.answers.Add(1)
	if ecs.IsValid() {
		c.withECS.Add(1)
	}
	for ; ends != 0; ends &= ends - 1 {
		c.ends[bits.TrailingZeros64(ends)].Add(1)
	}
}

func packQuery(b testing.TB, name string, qtype uint16, edns bool) []byte {
	b.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	pkt, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return pkt
}

// BenchmarkServeDNS measures answering one query from packet to packet, as
// the UDP loop does (less the socket write): the wire fast path, which must
// not allocate, then the recorder call. The plain cases run without a
// recorder; recorder/* with a counting one; lowdisc/* with low-discrepancy
// answers and the counting recorder.
func BenchmarkServeDNS(b *testing.B) {
	rec, ldRec := &countingRecorder{}, &countingRecorder{}
	plain, recording := benchServer(b), benchServerWith(b, "", rec)
	lowDisc := benchServerWith(b, "\n[skew]\nlow_discrepancy = true\n", ldRec)
	weighted := packQuery(b, "w.example.test.", dns.TypeA, false)
	latencyECS := packECSQuery(b, "lat.example.test.", "10.2.3.0/24")
	for _, c := range []struct {
		name string
		s    *Server
		pkt  []byte
		rec  *countingRecorder // nil: none; else it must count every answer
	}{
		{"weighted", plain, weighted, nil},
		{"weighted-edns", plain, packQuery(b, "w.example.test.", dns.TypeA, true), nil},
		{"weighted-2", plain, packQuery(b, "w2.example.test.", dns.TypeA, true), nil},
		{"nxdomain", plain, packQuery(b, "nx.example.test.", dns.TypeA, true), nil},
		{"latency-ecs", plain, latencyECS, nil},
		{"recorder/weighted", recording, weighted, rec},
		{"recorder/latency-ecs", recording, latencyECS, rec},
		{"lowdisc/weighted", lowDisc, weighted, ldRec},
		{"lowdisc/latency-ecs", lowDisc, latencyECS, ldRec},
	} {
		b.Run(c.name, func(b *testing.B) {
			out := make([]byte, maxUDPPacket)
			var snt sent
			var before uint64
			if c.rec != nil {
				before = c.rec.answers.Load()
			}
			n := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				if c.s.respondUDP(c.pkt, out, testClient, &snt) == 0 {
					b.Fatal("no answer")
				}
				snt.record()
				n++
			}
			if c.rec != nil && c.rec.answers.Load()-before != n {
				b.Fatalf("recorder counted %d answers of %d", c.rec.answers.Load()-before, n)
			}
		})
	}
}

// packECSQuery packs an A query with EDNS and a client-subnet option.
func packECSQuery(b testing.TB, name, subnet string) []byte {
	b.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.SetEdns0(1232, false)
	p := netip.MustParsePrefix(subnet)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
		SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
	pkt, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return pkt
}

// BenchmarkServeDNSGeneral measures the miekg/dns message path that answers
// what the fast path leaves (EDNS options, CNAME chains, errors).
func BenchmarkServeDNSGeneral(b *testing.B) {
	s := benchServer(b)
	pkt := packQuery(b, "w.example.test.", dns.TypeA, true)
	out := make([]byte, maxUDPPacket)
	t := s.table.Load()
	b.ReportAllocs()
	for b.Loop() {
		if s.slowUDP(t, pkt, out, testClient, new(sent)) == 0 {
			b.Fatal("no answer")
		}
	}
}

// TestFastPathDoesNotAllocate guards the hot path's promise.
func TestFastPathDoesNotAllocate(t *testing.T) {
	s, err := New(mustConfig(t, weightedConfig), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("w.example.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	pkt, _ := m.Pack()
	out := make([]byte, maxUDPPacket)
	if n, _, _ := s.table.Load().fastAnswer(pkt, out, testClient, s.rnd, new(sent)); n == 0 {
		t.Fatal("fast path declined a plain weighted query")
	}
	var snt sent
	if a := testing.AllocsPerRun(200, func() { s.respondUDP(pkt, out, testClient, &snt) }); a != 0 {
		t.Errorf("fast path allocates %.1f times per query, want 0", a)
	}
}
