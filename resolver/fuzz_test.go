package resolver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/config"
)

// fuzzConfig has a service of every policy and family, static records of
// several types (a CNAME chain, an empty non-terminal, a TXT set too big for
// 512 bytes) and NSID, so that raw packets reach every branch of both paths.
var fuzzConfig = `
[node]
name   = "fuzz-1"
region = "us-east"

[dns]
nsid     = true
udp_size = 1232

[regions.us-east]
[regions.eu-west]
networks = ["198.51.100.0/24"]

[[zones]]
origin  = "gslb.example.test."
ttl     = 300
ns      = ["ns1.gslb.example.test.", "ns2.gslb.example.test."]
serial  = 1
records = "gslb.zone"

[[zones]]
origin  = "other.test."
ttl     = 60
ns      = ["ns.other.test."]

[[services]]
name        = "api.gslb.example.test."
ttl         = 20
max_answers = 2
endpoints   = [
  { name = "a", region = "us-east", address = "192.0.2.1", weight = 3 },
  { name = "b", region = "eu-west", address = "192.0.2.2", weight = 1 },
  { name = "c", region = "eu-west", address = "2001:db8::3", weight = 0 },
  { name = "d", region = "eu-west", address = "2001:db8::4" },
]

[[services]]
name        = "mv.gslb.example.test."
policy      = "multivalue"
ttl         = 20
max_answers = 30
endpoints   = [
` + fuzzManyEndpoints + `]

[[services]]
name      = "fo.gslb.example.test."
policy    = "failover"
endpoints = [
  { name = "p1", region = "us-east", address = "192.0.2.11", priority = 1 },
  { name = "p2", region = "us-east", address = "192.0.2.21", priority = 2 },
]

[[services]]
name      = "edge.gslb.example.test."
endpoints = [{ name = "www", region = "us-east", cname = "www.gslb.example.test." }]

[[services]]
name      = "x.deep.gslb.example.test."
endpoints = [{ name = "x", region = "us-east", address = "192.0.2.99" }]

[[services]]
name      = "other.test."
endpoints = [{ name = "o", region = "us-east", address = "192.0.2.50" }]

[[services]]
name      = "lat.gslb.example.test."
policy    = "latency"
endpoints = [
  { name = "u1", region = "us-east", address = "192.0.2.61" },
  { name = "u2", region = "us-east", address = "192.0.2.62", weight = 3 },
  { name = "e1", region = "eu-west", address = "192.0.2.63", weight = 2 },
]
`

// fuzzLowDiscrepancy turns on low-discrepancy answers.
const fuzzLowDiscrepancy = `
[skew]
low_discrepancy = true
`

var fuzzManyEndpoints = func() string {
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "  { name = \"e%d\", region = \"us-east\", address = \"2001:db8::%x\" },\n", i, i+1)
	}
	return b.String()
}()

var fuzzZone = func() string {
	z := `$ORIGIN gslb.example.test.
ns1    IN A     127.0.0.1
www    IN A     192.0.2.80
www    IN AAAA  2001:db8::80
docs   IN CNAME www
chain  IN CNAME docs
ext    IN CNAME www.example.org.
@      IN TXT   "zone"
@      IN MX    10 mail.example.org.
_sip._udp IN SRV 0 5 5060 www
sub    IN NS    ns.sub
sub    IN NS    ns.example.org.
ns.sub IN A     192.0.2.53
ns.sub IN AAAA  2001:db8::53
tosub  IN CNAME www.sub
`
	for i := range 8 {
		z += fmt.Sprintf("big IN TXT \"%02d%s\"\n", i, strings.Repeat("y", 98))
	}
	return z
}()

// newFuzzServer compiles fuzzConfig, followed by extra, into a Server that
// is not running, whose clock stands still.
func newFuzzServer(tb testing.TB, extra string) *Server {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gslb.zone"), []byte(fuzzZone), 0o644); err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fuzzConfig+extra), filepath.Join(dir, "config.toml"))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	s, err := New(cfg, Options{Clock: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fuzzSeeds are packed queries of every kind the server answers, and junk.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	query := func(name string, qtype uint16, edit ...func(*dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.Id = 0xBEEF
		for _, e := range edit {
			e(m)
		}
		b, err := m.Pack()
		if err != nil {
			tb.Fatalf("seed %s: %v", name, err)
		}
		return b
	}
	edns := func(size uint16) func(*dns.Msg) { return func(m *dns.Msg) { m.SetEdns0(size, false) } }
	option := func(o dns.EDNS0) func(*dns.Msg) {
		return func(m *dns.Msg) {
			if m.IsEdns0() == nil {
				m.SetEdns0(1232, false)
			}
			m.IsEdns0().Option = append(m.IsEdns0().Option, o)
		}
	}
	nsid := option(&dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	ecs := option(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 51, 100, 0)})
	cookie := option(&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	padding := option(&dns.EDNS0_PADDING{Padding: make([]byte, 16)})
	seeds := [][]byte{
		query("api.gslb.example.test.", dns.TypeA),
		query("api.gslb.example.test.", dns.TypeAAAA, edns(1232)),
		query("ApI.GsLb.ExAmPlE.TeSt.", dns.TypeA),
		query("api.gslb.example.test.", dns.TypeA, nsid),
		query("api.gslb.example.test.", dns.TypeA, ecs),
		query("lat.gslb.example.test.", dns.TypeA, ecs),
		query("lat.gslb.example.test.", dns.TypeA, edns(1232)),
		query("lat.gslb.example.test.", dns.TypeA),
		query("api.gslb.example.test.", dns.TypeA, cookie),
		query("api.gslb.example.test.", dns.TypeA, padding),
		query("api.gslb.example.test.", dns.TypeANY),
		query("api.gslb.example.test.", dns.TypeTXT),
		query("mv.gslb.example.test.", dns.TypeAAAA),
		query("mv.gslb.example.test.", dns.TypeAAAA, edns(4096)),
		query("fo.gslb.example.test.", dns.TypeA, edns(512)),
		query("edge.gslb.example.test.", dns.TypeA),
		query("edge.gslb.example.test.", dns.TypeCNAME),
		query("docs.gslb.example.test.", dns.TypeAAAA),
		query("chain.gslb.example.test.", dns.TypeA, edns(1232)),
		query("www.gslb.example.test.", dns.TypeANY, nsid, ecs),
		query("www.gslb.example.test.", dns.TypeMX),
		query("deep.gslb.example.test.", dns.TypeA),
		query("nope.gslb.example.test.", dns.TypeA),
		query("nope.other.test.", dns.TypeA, edns(1232)),
		query("other.test.", dns.TypeSOA),
		query("other.test.", dns.TypeA),
		query("gslb.example.test.", dns.TypeNS),
		query("gslb.example.test.", dns.TypeSOA, edns(600)),
		query("_sip._udp.gslb.example.test.", dns.TypeSRV),
		query("big.gslb.example.test.", dns.TypeTXT),
		query("big.gslb.example.test.", dns.TypeTXT, edns(1232)),
		query("www.example.org.", dns.TypeA),
		query("gslb.example.test.", dns.TypeAXFR),
		query("api.gslb.example.test.", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }),
		query("api.gslb.example.test.", dns.TypeA, func(m *dns.Msg) { m.Opcode = dns.OpcodeStatus }),
		query("api.gslb.example.test.", dns.TypeA, func(m *dns.Msg) { m.Response = true }),
		query("api.gslb.example.test.", dns.TypeA, edns(1232), func(m *dns.Msg) { m.IsEdns0().SetVersion(1) }),
		query("api.gslb.example.test.", dns.TypeA, func(m *dns.Msg) {
			m.Question = append(m.Question, m.Question[0])
		}),
		query("api.gslb.example.test.", dns.TypeA, func(m *dns.Msg) { m.Question = nil }),
		query("a\\.b.gslb.example.test.", dns.TypeA),
		query("www.sub.gslb.example.test.", dns.TypeA),
		query("SuB.gslb.example.test.", dns.TypeNS, edns(1232)),
		query("sub.gslb.example.test.", dns.TypeDS),
		query("ns.sub.gslb.example.test.", dns.TypeAAAA, edns(512)),
		query("tosub.gslb.example.test.", dns.TypeA),
	}
	// A question name compressed to point at itself, and a header alone.
	loop := append(slices.Clone(seeds[0][:12]), 0xC0, 12, 0, 1, 0, 1)
	seeds = append(seeds, loop, seeds[0][:12], seeds[0][:20], []byte{}, []byte("\x00"), bytes.Repeat([]byte{0xFF}, 40))
	// The plain query with trailing garbage.
	seeds = append(seeds, append(slices.Clone(seeds[0]), 1, 2, 3))
	return seeds
}

// FuzzServeUDP feeds raw packets to the UDP packet path. It checks that any
// answer is a well-formed response to the packet, and that the wire fast
// path and respondUDP as a whole answer exactly what the general path
// (table.answer, miekg/dns messages) answers for the same random draws.
// The same holds with low-discrepancy answers, and both paths note the
// same answers for the recorder.
func FuzzServeUDP(f *testing.F) {
	servers := []*Server{newFuzzServer(f, ""), newFuzzServer(f, fuzzLowDiscrepancy)}
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	out := make([]byte, maxUDPPacket)
	fast := make([]byte, maxUDPPacket)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, s := range servers {
			checkPaths(t, s, pkt, out, fast)
		}
	})
}

// checkPaths is FuzzServeUDP's check of one packet against one server.
func checkPaths(t *testing.T, s *Server, pkt, out, fast []byte) {
	t.Helper()
	tbl := s.table.Load()
	// A constant draw, varied by packet: picks do not depend on how
	// many draws a path made before, so the fast path giving up after
	// drawing cannot make respondUDP differ from table.answer.
	h := fnv.New64a()
	h.Write(pkt)
	c := h.Sum64()
	s.rnd = func() uint64 { return c }

	var snt sent
	n := s.respondUDP(pkt, out, testClient, &snt)
	if n < 0 || n > len(out) {
		t.Fatalf("respondUDP returned %d for a %d-byte buffer", n, len(out))
	}
	var got *dns.Msg
	if n > 0 {
		got = unpackResponse(t, pkt, out[:n])
	}

	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		checkUnparsable(t, pkt, n, got)
		if fn, _, _ := tbl.fastAnswer(pkt, fast, testClient, s.rnd, new(sent)); fn > 0 {
			t.Fatalf("fast path answered a packet the general path cannot parse (%v)", err)
		}
		return
	}
	if req.Response {
		if n != 0 {
			t.Fatalf("answered a response: %v", got)
		}
		return
	}
	var wantSent sent
	want := generalUDP(t, tbl, req, s.rnd, &wantSent)
	if want == nil {
		if n != 0 {
			t.Fatalf("general path drops the packet; respondUDP answered %v", got)
		}
		return
	}
	if got == nil {
		t.Fatalf("respondUDP dropped a query the general path answers:\n%v", want)
	}
	if limit := udpLimit(req, tbl.udp); n > limit {
		t.Errorf("response of %d bytes exceeds the UDP limit %d", n, limit)
	}
	compareMsgs(t, "respondUDP", got, want)
	compareSent(t, "respondUDP", &snt, &wantSent)

	// The fast path alone, with ordinary random draws.
	seed := rand.New(rand.NewPCG(c, 7))
	var fastSent sent
	fn, _, _ := tbl.fastAnswer(pkt, fast, testClient, seed.Uint64, &fastSent)
	if fn == 0 {
		return
	}
	fastMsg := unpackResponse(t, pkt, fast[:fn])
	seed = rand.New(rand.NewPCG(c, 7))
	compareMsgs(t, "fast path", fastMsg, generalUDP(t, tbl, req, seed.Uint64, &wantSent))
	compareSent(t, "fast path", &fastSent, &wantSent)
}

// compareSent fails unless two paths noted the same answers to record.
func compareSent(t *testing.T, what string, got, want *sent) {
	t.Helper()
	if got.n != want.n || !slices.Equal(got.svcs[:got.n], want.svcs[:want.n]) || got.ecs != want.ecs || got.source != want.source {
		t.Fatalf("%s notes for the recorder:\n got %+v\nwant %+v", what, *got, *want)
	}
}

// generalUDP is the general path's UDP response to req: table.answer,
// truncated to the UDP limit, packed and parsed again. snt gets what it
// would record (nothing for a truncated response).
func generalUDP(t *testing.T, tbl *table, req *dns.Msg, rnd rand64, snt *sent) *dns.Msg {
	t.Helper()
	resp := tbl.answer(req, testClient, rnd, snt)
	if resp == nil {
		return nil
	}
	resp.Truncate(udpLimit(req, tbl.udp))
	resp.Compress = true
	if resp.Truncated {
		snt.n = 0
	}
	b, err := resp.Pack()
	if err != nil {
		t.Logf("general path cannot pack its response: %v", err)
		snt.n = 0
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("general path response does not parse: %v", err)
	}
	return m
}

// unpackResponse parses a response to pkt and checks its QR bit and ID.
func unpackResponse(t *testing.T, pkt, resp []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("response does not parse: %v\n% x", err, resp)
	}
	if !m.Response {
		t.Fatalf("response without QR: %v", m)
	}
	if len(pkt) < 2 || m.Id != binary.BigEndian.Uint16(pkt) {
		t.Fatalf("response id %d does not match the query", m.Id)
	}
	return m
}

// checkUnparsable checks the answer to a packet miekg/dns cannot parse:
// nothing, or (for a query header) a bare FORMERR header.
func checkUnparsable(t *testing.T, pkt []byte, n int, got *dns.Msg) {
	t.Helper()
	query := len(pkt) >= headerLen && pkt[2]&0x80 == 0
	switch {
	case !query && n != 0:
		t.Fatalf("answered a packet without a query header: %v", got)
	case query && (n != headerLen || got.Rcode != dns.RcodeFormatError):
		t.Fatalf("unparsable query answered with %d bytes, want a FORMERR header: %v", n, got)
	}
}

// compareMsgs fails unless got and want have the same header, question and
// sections, in order. Owner names compare case-insensitively: the fast path
// points owners at the question (keeping its 0x20 case), the general path
// writes the table's canonical names.
func compareMsgs(t *testing.T, what string, got, want *dns.Msg) {
	t.Helper()
	if got.MsgHdr != want.MsgHdr {
		t.Errorf("%s header:\n got %+v\nwant %+v", what, got.MsgHdr, want.MsgHdr)
	}
	if !slices.Equal(got.Question, want.Question) {
		t.Errorf("%s question: got %v, want %v", what, got.Question, want.Question)
	}
	for _, sec := range []struct {
		name      string
		got, want []dns.RR
	}{{"answer", got.Answer, want.Answer}, {"authority", got.Ns, want.Ns}, {"additional", got.Extra, want.Extra}} {
		g, w := sectionStrings(sec.got), sectionStrings(sec.want)
		if !slices.Equal(g, w) {
			t.Errorf("%s %s section:\n got %q\nwant %q\nfull got:\n%v\nfull want:\n%v", what, sec.name, g, w, got, want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func sectionStrings(rrs []dns.RR) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		rr = dns.Copy(rr)
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		out[i] = rr.String()
	}
	return out
}
