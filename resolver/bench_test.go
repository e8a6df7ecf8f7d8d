package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

func benchServer(b *testing.B) *Server {
	b.Helper()
	s, err := New(mustConfig(b, weightedConfig), Options{})
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
	} {
		b.Run(c.name, func(b *testing.B) {
			out := make([]byte, maxUDPPacket)
			b.ReportAllocs()
			for b.Loop() {
				if s.respondUDP(c.pkt, out) == 0 {
					b.Fatal("no answer")
				}
			}
		})
	}
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
		if s.slowUDP(t, pkt, out) == 0 {
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
	if n, _, _ := s.table.Load().fastAnswer(pkt, out, s.rnd); n == 0 {
		t.Fatal("fast path declined a plain weighted query")
	}
	if a := testing.AllocsPerRun(200, func() { s.respondUDP(pkt, out) }); a != 0 {
		t.Errorf("fast path allocates %.1f times per query, want 0", a)
	}
}
