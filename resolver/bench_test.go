package resolver

import (
	"net/netip"
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
	s, err := New(mustConfig(b, latencyBenchConfig), Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func packQuery(b *testing.B, name string, qtype uint16, edns bool) []byte {
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

// BenchmarkServeDNS measures answering one weighted query from packet to
// packet, as the UDP loop does: the wire fast path, which must not allocate.
func BenchmarkServeDNS(b *testing.B) {
	s := benchServer(b)
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"weighted", packQuery(b, "w.example.test.", dns.TypeA, false)},
		{"weighted-edns", packQuery(b, "w.example.test.", dns.TypeA, true)},
		{"weighted-2", packQuery(b, "w2.example.test.", dns.TypeA, true)},
		{"nxdomain", packQuery(b, "nx.example.test.", dns.TypeA, true)},
		{"latency-ecs", packECSQuery(b, "lat.example.test.", "10.2.3.0/24")},
	} {
		b.Run(c.name, func(b *testing.B) {
			out := make([]byte, maxUDPPacket)
			var snt sent
			b.ReportAllocs()
			for b.Loop() {
				if s.respondUDP(c.pkt, out, testClient, &snt) == 0 {
					b.Fatal("no answer")
				}
			}
		})
	}
}

// packECSQuery packs an A query with EDNS and a client-subnet option.
func packECSQuery(b *testing.B, name, subnet string) []byte {
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
