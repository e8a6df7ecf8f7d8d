package resolver_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/config"
	"meridian/internal/dnstest"
	"meridian/resolver"
)

// testConfig is the zone most tests query: static records (with an empty
// non-terminal, CNAME chains, a large TXT set and an escaped owner) and
// services of each kind. udp_size is 1400 so that its echo is recognisable.
var testConfig = `
[node]
name   = "test-node-1"
region = "us-east"

[dns]
nsid     = true
udp_size = 1400

[regions.us-east]
[regions.eu-west]

[[zones]]
origin     = "gslb.example.test."
ttl        = 300
ns         = ["ns1.gslb.example.test.", "ns2.gslb.example.test."]
hostmaster = "hostmaster.gslb.example.test."
serial     = 2024010101
records    = "gslb.zone"

[[services]]
name      = "api.gslb.example.test."
ttl       = 20
endpoints = [{ name = "use1", region = "us-east", address = "192.0.2.10" }]

[[services]]
name      = "dual.gslb.example.test."
ttl       = 20
endpoints = [
  { name = "v4", region = "us-east", address = "192.0.2.11" },
  { name = "v6", region = "us-east", address = "2001:db8::11" },
]

[[services]]
name      = "edge.gslb.example.test."
ttl       = 20
endpoints = [{ name = "www", region = "us-east", cname = "www.gslb.example.test." }]

[[services]]
name      = "cdn.gslb.example.test."
ttl       = 20
endpoints = [{ name = "cdn", region = "us-east", cname = "cdn.example.net." }]

[[services]]
name      = "api.eu.gslb.example.test."
ttl       = 20
endpoints = [{ name = "euw1", region = "eu-west", address = "192.0.2.20" }]

[[services]]
name        = "many.gslb.example.test."
policy      = "multivalue"
ttl         = 20
max_answers = 40
endpoints   = [
` + manyEndpoints + `]
`

// manyEndpoints is 40 AAAA endpoints: 40 answers do not fit in 512 bytes.
var manyEndpoints = func() string {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "  { name = \"e%d\", region = \"us-east\", address = \"2001:db8::%x\" },\n", i, i+1)
	}
	return b.String()
}()

var testZone = `$ORIGIN gslb.example.test.
ns1        IN A      127.0.0.1
ns2        IN A      127.0.0.2
www        IN A      192.0.2.80
www        IN AAAA   2001:db8::80
docs       IN CNAME  www
chain      IN CNAME  docs
ext        IN CNAME  www.example.org.
shout      IN CNAME  WWW
host.deep  IN A      192.0.2.99
@          IN TXT    "meridian test zone"
@          IN MX     10 mail.example.org.
esc\.aped  IN TXT    "escaped"
` + bigTXT

// bigTXT is a static TXT set of about 1100 bytes.
var bigTXT = func() string {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "big IN TXT \"%02d%s\"\n", i, strings.Repeat("x", 98))
	}
	return b.String()
}()

// Records of testZone and its services, as zone-file lines.
const (
	soa300  = "gslb.example.test. 300 IN SOA ns1.gslb.example.test. hostmaster.gslb.example.test. 2024010101 3600 600 86400 300"
	soa20   = "gslb.example.test. 20 IN SOA ns1.gslb.example.test. hostmaster.gslb.example.test. 2024010101 3600 600 86400 300"
	apiA    = "api.gslb.example.test. 20 IN A 192.0.2.10"
	wwwA    = "www.gslb.example.test. 300 IN A 192.0.2.80"
	wwwAAAA = "www.gslb.example.test. 300 IN AAAA 2001:db8::80"
)

// startTest starts a server for testConfig and testZone.
func startTest(t *testing.T) (*resolver.Server, string) {
	t.Helper()
	return dnstest.StartServerFiles(t, testConfig, map[string]string{"gslb.zone": testZone})
}

// transports are the ways every case is asked.
var transports = []string{"udp", "tcp"}

// dnsCase is one query and the exact response it must get, sections written
// as zone-file lines (in any order; OPT is checked separately).
type dnsCase struct {
	name   string
	q      *dns.Msg
	rcode  int
	flags  string // dig's flags line: "qr aa rd"
	answer []string
	ns     []string
	extra  []string
}

// run asks c over every transport and checks the response.
func (c dnsCase) run(t *testing.T, addr string) {
	t.Helper()
	for _, proto := range transports {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			q := c.q.Copy()
			r := dnstest.Exchange(t, addr, q, proto)
			c.check(t, q, r)
		})
	}
}

func (c dnsCase) check(t *testing.T, q, r *dns.Msg) {
	t.Helper()
	if r.Id != q.Id {
		t.Errorf("id = %d, want %d", r.Id, q.Id)
	}
	if r.Rcode != c.rcode {
		t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
	}
	if got := dnstest.Flags(r); got != c.flags {
		t.Errorf("flags = [%s], want [%s]", got, c.flags)
	}
	if r.Opcode != q.Opcode {
		t.Errorf("opcode = %s, want %s", dns.OpcodeToString[r.Opcode], dns.OpcodeToString[q.Opcode])
	}
	if !slices.Equal(r.Question, q.Question) {
		t.Errorf("question = %v, want %v", r.Question, q.Question)
	}
	dnstest.CheckSection(t, "answer", r.Answer, c.answer...)
	dnstest.CheckSection(t, "authority", r.Ns, c.ns...)
	dnstest.CheckSection(t, "additional", r.Extra, c.extra...)
}

func q(name string, qtype uint16, opts ...dnstest.QueryOption) *dns.Msg {
	return dnstest.Query(name, qtype, opts...)
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	cases := []dnsCase{
		{name: "service A, RD copied", q: q("api.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{apiA}},
		{name: "service A, RD clear stays clear", q: q("api.gslb.example.test.", dns.TypeA, dnstest.RD(false)),
			flags: "qr aa", answer: []string{apiA}},
		{name: "CD copied", q: q("api.gslb.example.test.", dns.TypeA, dnstest.RD(false), dnstest.CD(true)),
			flags: "qr aa cd", answer: []string{apiA}},
		{name: "outside every zone is REFUSED", q: q("www.example.org.", dns.TypeA),
			rcode: dns.RcodeRefused, flags: "qr rd"},
		{name: "parent of the zone is REFUSED", q: q("example.test.", dns.TypeSOA),
			rcode: dns.RcodeRefused, flags: "qr rd"},
		{name: "class CH is REFUSED", q: q("www.gslb.example.test.", dns.TypeA, dnstest.Class(dns.ClassCHAOS)),
			rcode: dns.RcodeRefused, flags: "qr rd"},
		{name: "AXFR is REFUSED", q: q("gslb.example.test.", dns.TypeAXFR),
			rcode: dns.RcodeRefused, flags: "qr rd"},
		{name: "missing name is NXDOMAIN with the SOA at its negative TTL", q: q("nope.gslb.example.test.", dns.TypeA),
			rcode: dns.RcodeNameError, flags: "qr aa rd", ns: []string{soa300}},
		{name: "name below a service is NXDOMAIN", q: q("x.api.gslb.example.test.", dns.TypeA),
			rcode: dns.RcodeNameError, flags: "qr aa rd", ns: []string{soa300}},
		{name: "missing type is NODATA", q: q("www.gslb.example.test.", dns.TypeTXT),
			flags: "qr aa rd", ns: []string{soa300}},
		{name: "AAAA of an IPv4-only service is NODATA at the service TTL", q: q("api.gslb.example.test.", dns.TypeAAAA),
			flags: "qr aa rd", ns: []string{soa20}},
		{name: "TXT of a service is NODATA", q: q("api.gslb.example.test.", dns.TypeTXT),
			flags: "qr aa rd", ns: []string{soa20}},
		{name: "empty non-terminal of a static name is NODATA", q: q("deep.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", ns: []string{soa300}},
		{name: "empty non-terminal of a service is NODATA", q: q("eu.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", ns: []string{soa300}},
		{name: "below an empty non-terminal", q: q("host.deep.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"host.deep.gslb.example.test. 300 IN A 192.0.2.99"}},
		{name: "service under an empty non-terminal", q: q("api.eu.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"api.eu.gslb.example.test. 20 IN A 192.0.2.20"}},
		{name: "dual-stack service A", q: q("dual.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"dual.gslb.example.test. 20 IN A 192.0.2.11"}},
		{name: "dual-stack service AAAA", q: q("dual.gslb.example.test.", dns.TypeAAAA),
			flags: "qr aa rd", answer: []string{"dual.gslb.example.test. 20 IN AAAA 2001:db8::11"}},
		{name: "cname service with in-zone target answers the target too", q: q("edge.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"edge.gslb.example.test. 20 IN CNAME www.gslb.example.test.", wwwA}},
		{name: "cname service AAAA", q: q("edge.gslb.example.test.", dns.TypeAAAA),
			flags: "qr aa rd", answer: []string{"edge.gslb.example.test. 20 IN CNAME www.gslb.example.test.", wwwAAAA}},
		{name: "cname service asked for CNAME", q: q("edge.gslb.example.test.", dns.TypeCNAME),
			flags: "qr aa rd", answer: []string{"edge.gslb.example.test. 20 IN CNAME www.gslb.example.test."}},
		{name: "cname service with out-of-zone target", q: q("cdn.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"cdn.gslb.example.test. 20 IN CNAME cdn.example.net."}},
		{name: "static CNAME chased", q: q("docs.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"docs.gslb.example.test. 300 IN CNAME www.gslb.example.test.", wwwA}},
		{name: "static CNAME chain chased", q: q("chain.gslb.example.test.", dns.TypeAAAA),
			flags: "qr aa rd", answer: []string{"chain.gslb.example.test. 300 IN CNAME docs.gslb.example.test.",
				"docs.gslb.example.test. 300 IN CNAME www.gslb.example.test.", wwwAAAA}},
		{name: "static CNAME asked for CNAME", q: q("docs.gslb.example.test.", dns.TypeCNAME),
			flags: "qr aa rd", answer: []string{"docs.gslb.example.test. 300 IN CNAME www.gslb.example.test."}},
		{name: "static CNAME out of zone", q: q("ext.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"ext.gslb.example.test. 300 IN CNAME www.example.org."}},
		{name: "static CNAME with an upper-case target is chased", q: q("shout.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"shout.gslb.example.test. 300 IN CNAME WWW.gslb.example.test.", wwwA}},
		{name: "apex SOA", q: q("gslb.example.test.", dns.TypeSOA),
			flags: "qr aa rd", answer: []string{soa300}},
		{name: "apex NS", q: q("gslb.example.test.", dns.TypeNS),
			flags: "qr aa rd", answer: []string{"gslb.example.test. 300 IN NS ns1.gslb.example.test.",
				"gslb.example.test. 300 IN NS ns2.gslb.example.test."}},
		{name: "apex MX", q: q("gslb.example.test.", dns.TypeMX),
			flags: "qr aa rd", answer: []string{"gslb.example.test. 300 IN MX 10 mail.example.org."}},
		{name: "owner with an escaped dot", q: q(`esc\.aped.gslb.example.test.`, dns.TypeTXT),
			flags: "qr aa rd", answer: []string{`esc\.aped.gslb.example.test. 300 IN TXT "escaped"`}},
		{name: "ANY at a static name is one RRset", q: q("www.gslb.example.test.", dns.TypeANY),
			flags: "qr aa rd", answer: []string{wwwA}},
		{name: "ANY at the apex is one RRset", q: q("gslb.example.test.", dns.TypeANY),
			flags: "qr aa rd", answer: []string{"gslb.example.test. 300 IN NS ns1.gslb.example.test.",
				"gslb.example.test. 300 IN NS ns2.gslb.example.test."}},
		{name: "ANY at a service is one RRset", q: q("api.gslb.example.test.", dns.TypeANY),
			flags: "qr aa rd", answer: []string{apiA}},
		{name: "ANY at a missing name is NXDOMAIN", q: q("nope.gslb.example.test.", dns.TypeANY),
			rcode: dns.RcodeNameError, flags: "qr aa rd", ns: []string{soa300}},
		{name: "ANY at an empty non-terminal is NODATA", q: q("deep.gslb.example.test.", dns.TypeANY),
			flags: "qr aa rd", ns: []string{soa300}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, addr)
		})
	}
}

// TestQueryName0x20 checks that the question comes back exactly as sent,
// byte for byte, on the wire fast path (no EDNS, plain EDNS) and the
// general path (NSID, ECS, TCP).
func TestQueryName0x20(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	const name = "ApI.GsLb.ExAmPlE.TeSt."
	cases := []struct {
		name string
		opts []dnstest.QueryOption
	}{
		{"no EDNS", nil},
		{"EDNS", []dnstest.QueryOption{dnstest.EDNS(1232)}},
		{"NSID", []dnstest.QueryOption{dnstest.NSID()}},
		{"ECS", []dnstest.QueryOption{dnstest.ECS(netip.MustParsePrefix("198.51.100.0/24"))}},
		{"NXDOMAIN", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			qname := name
			if c.name == "NXDOMAIN" {
				qname = "NoPe.GsLb.ExAmPlE.TeSt."
			}
			m := dnstest.Query(qname, dns.TypeA, c.opts...)
			pkt := dnstest.Pack(t, m)
			conn := dnstest.DialUDP(t, addr)
			if _, err := conn.Write(pkt); err != nil {
				t.Fatal(err)
			}
			resp, ok := dnstest.ReadPacket(t, conn, dnstest.Timeout)
			if !ok {
				t.Fatal("no response")
			}
			qlen := len(qname) + 1 + 4 // wire name, type, class
			if len(resp) < 12+qlen || string(resp[12:12+qlen]) != string(pkt[12:12+qlen]) {
				t.Fatalf("question on the wire = %q, want %q", resp[12:min(len(resp), 12+qlen)], pkt[12:12+qlen])
			}
			r := new(dns.Msg)
			if err := r.Unpack(resp); err != nil {
				t.Fatal(err)
			}
			if r.Question[0].Name != qname {
				t.Errorf("question name = %q, want %q", r.Question[0].Name, qname)
			}
			checkAPI(t, qname, r)
			// And over TCP.
			tr := dnstest.Exchange(t, addr, m.Copy(), "tcp")
			if tr.Question[0].Name != qname {
				t.Errorf("tcp question name = %q, want %q", tr.Question[0].Name, qname)
			}
			checkAPI(t, qname, tr)
		})
	}
}

// checkAPI checks the answer to a query for api in any case: its A record,
// owned by the query name in any case (the fast path's owner is a pointer
// to the question, the general path's the canonical name).
func checkAPI(t *testing.T, qname string, r *dns.Msg) {
	t.Helper()
	if !strings.HasPrefix(strings.ToLower(qname), "api.") {
		return
	}
	if len(r.Answer) != 1 {
		t.Fatalf("answer = %v, want the A of api", r.Answer)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || a.A.String() != "192.0.2.10" || !strings.EqualFold(a.Hdr.Name, qname) {
		t.Errorf("answer = %v, want the A of api", r.Answer[0])
	}
}

// ednsString describes a response's OPT record: "none", or its version,
// payload size, DO bit and options (NSID decoded, ECS as family/addr/source/scope).
func ednsString(r *dns.Msg) string {
	o := r.IsEdns0()
	if o == nil {
		return "none"
	}
	s := fmt.Sprintf("version %d udp %d do %t", o.Version(), o.UDPSize(), o.Do())
	for _, opt := range o.Option {
		switch opt := opt.(type) {
		case *dns.EDNS0_NSID:
			b, err := hex.DecodeString(opt.Nsid)
			if err != nil {
				s += fmt.Sprintf(" nsid(bad hex %q)", opt.Nsid)
				continue
			}
			s += fmt.Sprintf(" nsid %q", b)
		case *dns.EDNS0_SUBNET:
			a, _ := netip.AddrFromSlice(opt.Address)
			if opt.Family == 1 {
				a = a.Unmap() // miekg/dns holds IPv4 in 16 bytes
			}
			s += fmt.Sprintf(" ecs %d/%s/%d/%d", opt.Family, a, opt.SourceNetmask, opt.SourceScope)
		default:
			s += fmt.Sprintf(" option %d", opt.Option())
		}
	}
	return s
}

// ecsRaw is the data of a client subnet option as sent on the wire.
func ecsRaw(family uint16, source, scope uint8, addr ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, family)
	return append(append(b, source, scope), addr...)
}

func TestEDNS(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	twoOPT := q("api.gslb.example.test.", dns.TypeA, dnstest.EDNS(1232))
	twoOPT.Extra = append(twoOPT.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}})
	cases := []struct {
		name  string
		q     *dns.Msg
		rcode int
		flags string
		edns  string
		bare  bool // a bare FORMERR header: no question, no OPT
	}{
		{name: "no EDNS, no OPT", q: q("api.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", edns: "none"},
		{name: "OPT echoed with our udp_size", q: q("api.gslb.example.test.", dns.TypeA, dnstest.EDNS(4096)),
			flags: "qr aa rd", edns: "version 0 udp 1400 do false"},
		{name: "OPT echoed to a small client", q: q("api.gslb.example.test.", dns.TypeA, dnstest.EDNS(512)),
			flags: "qr aa rd", edns: "version 0 udp 1400 do false"},
		{name: "OPT on NXDOMAIN", q: q("nope.gslb.example.test.", dns.TypeA, dnstest.EDNS(1232)),
			rcode: dns.RcodeNameError, flags: "qr aa rd", edns: "version 0 udp 1400 do false"},
		{name: "OPT on REFUSED", q: q("www.example.org.", dns.TypeA, dnstest.EDNS(1232)),
			rcode: dns.RcodeRefused, flags: "qr rd", edns: "version 0 udp 1400 do false"},
		{name: "version 1 is BADVERS", q: q("api.gslb.example.test.", dns.TypeA, dnstest.EDNSVersion(1)),
			rcode: dns.RcodeBadVers, flags: "qr rd", edns: "version 0 udp 1400 do false"},
		{name: "NSID answered with the node name", q: q("api.gslb.example.test.", dns.TypeA, dnstest.NSID()),
			flags: "qr aa rd", edns: `version 0 udp 1400 do false nsid "test-node-1"`},
		{name: "NSID on NXDOMAIN", q: q("nope.gslb.example.test.", dns.TypeA, dnstest.NSID()),
			rcode: dns.RcodeNameError, flags: "qr aa rd", edns: `version 0 udp 1400 do false nsid "test-node-1"`},
		{name: "ECS IPv4 echoed with scope 0", q: q("api.gslb.example.test.", dns.TypeA,
			dnstest.ECS(netip.MustParsePrefix("198.51.100.0/24"))),
			flags: "qr aa rd", edns: "version 0 udp 1400 do false ecs 1/198.51.100.0/24/0"},
		{name: "ECS IPv6 echoed with scope 0", q: q("api.gslb.example.test.", dns.TypeA,
			dnstest.ECS(netip.MustParsePrefix("2001:db8:1200::/40"))),
			flags: "qr aa rd", edns: "version 0 udp 1400 do false ecs 2/2001:db8:1200::/40/0"},
		{name: "ECS IPv6 holding an IPv4-mapped prefix", q: q("api.gslb.example.test.", dns.TypeA,
			dnstest.EDNSOption(dns.EDNS0SUBNET, ecsRaw(2, 104, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198))),
			flags: "qr aa rd", edns: "version 0 udp 1400 do false ecs 2/::ffff:198.0.0.0/104/0"},
		{name: "ECS /0", q: q("api.gslb.example.test.", dns.TypeA, dnstest.EDNSOption(dns.EDNS0SUBNET, ecsRaw(1, 0, 0))),
			flags: "qr aa rd", edns: "version 0 udp 1400 do false ecs 1/0.0.0.0/0/0"},
		{name: "ECS and NSID", q: q("api.gslb.example.test.", dns.TypeA, dnstest.NSID(),
			dnstest.ECS(netip.MustParsePrefix("198.51.100.0/24"))),
			flags: "qr aa rd", edns: `version 0 udp 1400 do false nsid "test-node-1" ecs 1/198.51.100.0/24/0`},
		{name: "ECS with host bits set is FORMERR", q: q("api.gslb.example.test.", dns.TypeA,
			dnstest.EDNSOption(dns.EDNS0SUBNET, ecsRaw(1, 20, 0, 10, 0, 0x1f))),
			rcode: dns.RcodeFormatError, flags: "qr rd", edns: "version 0 udp 1400 do false"},
		{name: "ECS with a non-zero scope is FORMERR", q: q("api.gslb.example.test.", dns.TypeA,
			dnstest.EDNSOption(dns.EDNS0SUBNET, ecsRaw(1, 24, 8, 198, 51, 100))),
			rcode: dns.RcodeFormatError, flags: "qr rd", edns: "version 0 udp 1400 do false"},
		{name: "ECS with source prefix 33 for IPv4 is FORMERR", q: q("api.gslb.example.test.", dns.TypeA,
			dnstest.EDNSOption(dns.EDNS0SUBNET, ecsRaw(1, 33, 0, 10, 0, 0, 0, 0))),
			rcode: dns.RcodeFormatError, flags: "qr rd", edns: "none", bare: true},
		{name: "two OPT records are FORMERR (RFC 6891 6.1.1)", q: twoOPT,
			rcode: dns.RcodeFormatError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, proto := range transports {
				t.Run(proto, func(t *testing.T) {
					t.Parallel()
					m := c.q.Copy()
					r := dnstest.Exchange(t, addr, m, proto)
					if r.Id != m.Id {
						t.Errorf("id = %d, want %d", r.Id, m.Id)
					}
					if r.Rcode != c.rcode {
						t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
					}
					if c.flags == "" { // only the rcode matters
						return
					}
					if got := dnstest.Flags(r); got != c.flags {
						t.Errorf("flags = [%s], want [%s]", got, c.flags)
					}
					if c.bare { // a packet the server cannot parse: whatever header it can give
						return
					}
					if got := ednsString(r); got != c.edns {
						t.Errorf("OPT = %s, want %s", got, c.edns)
					}
					if !slices.Equal(r.Question, m.Question) {
						t.Errorf("question = %v, want %v", r.Question, m.Question)
					}
				})
			}
		})
	}
}

func TestNSIDDisabled(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(testConfig, "nsid     = true", "nsid     = false", 1)
	_, addr := dnstest.StartServerFiles(t, cfg, map[string]string{"gslb.zone": testZone})
	for _, proto := range transports {
		r := dnstest.Exchange(t, addr, q("api.gslb.example.test.", dns.TypeA, dnstest.NSID()), proto)
		if got, want := ednsString(r), "version 0 udp 1400 do false"; got != want {
			t.Errorf("%s: OPT = %s, want %s", proto, got, want)
		}
		dnstest.CheckSection(t, "answer", r.Answer, apiA)
	}
}

// TestTruncation checks that an answer too big for the client's UDP size
// comes back with TC set (and within the size) over UDP and whole over TCP.
func TestTruncation(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	var manyAAAA, bigTXTs []string
	for i := range 40 {
		manyAAAA = append(manyAAAA, fmt.Sprintf("many.gslb.example.test. 20 IN AAAA 2001:db8::%x", i+1))
	}
	for i := range 10 {
		bigTXTs = append(bigTXTs, fmt.Sprintf("big.gslb.example.test. 300 IN TXT \"%02d%s\"", i, strings.Repeat("x", 98)))
	}
	cases := []struct {
		name  string
		qname string
		qtype uint16
		want  []string
	}{
		{"multivalue service", "many.gslb.example.test.", dns.TypeAAAA, manyAAAA},
		{"static TXT set", "big.gslb.example.test.", dns.TypeTXT, bigTXTs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, limit := range []struct {
				opts []dnstest.QueryOption
				size int
				tc   bool
			}{
				{nil, 512, true}, // no EDNS: 512
				{[]dnstest.QueryOption{dnstest.EDNS(512)}, 512, true}, // EDNS 512
				{[]dnstest.QueryOption{dnstest.EDNS(4096)}, 1400, false},
			} {
				m := q(c.qname, c.qtype, limit.opts...)
				conn := dnstest.DialUDP(t, addr)
				if _, err := conn.Write(dnstest.Pack(t, m)); err != nil {
					t.Fatal(err)
				}
				pkt, ok := dnstest.ReadPacket(t, conn, dnstest.Timeout)
				if !ok {
					t.Fatalf("udp %d: no response", limit.size)
				}
				if len(pkt) > limit.size {
					t.Errorf("udp %d: response of %d bytes", limit.size, len(pkt))
				}
				r := new(dns.Msg)
				if err := r.Unpack(pkt); err != nil {
					t.Fatalf("udp %d: %v", limit.size, err)
				}
				if r.Truncated != limit.tc || r.Rcode != dns.RcodeSuccess || !r.Authoritative {
					t.Errorf("udp %d: rcode %s flags [%s], want NOERROR with aa and tc=%t",
						limit.size, dns.RcodeToString[r.Rcode], dnstest.Flags(r), limit.tc)
				}
				if !limit.tc {
					dnstest.CheckSection(t, "udp answer", r.Answer, c.want...)
				} else if len(r.Answer) >= len(c.want) {
					t.Errorf("udp %d: %d answers with TC set", limit.size, len(r.Answer))
				}
				if (limit.opts == nil) != (r.IsEdns0() == nil) {
					t.Errorf("udp %d: OPT = %s", limit.size, ednsString(r))
				}
				tr := dnstest.Exchange(t, addr, m, "tcp")
				if tr.Truncated {
					t.Error("tcp: TC set")
				}
				dnstest.CheckSection(t, "tcp answer", tr.Answer, c.want...)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	cases := []dnsCase{
		{name: "opcode STATUS is NOTIMP", q: q("api.gslb.example.test.", dns.TypeA, dnstest.Opcode(dns.OpcodeStatus)),
			rcode: dns.RcodeNotImplemented, flags: "qr rd"},
		{name: "opcode UPDATE is NOTIMP", q: q("gslb.example.test.", dns.TypeSOA, dnstest.Opcode(dns.OpcodeUpdate), dnstest.RD(false)),
			rcode: dns.RcodeNotImplemented, flags: "qr"},
		{name: "opcode NOTIFY is NOTIMP", q: q("gslb.example.test.", dns.TypeSOA, dnstest.Opcode(dns.OpcodeNotify), dnstest.RD(false)),
			rcode: dns.RcodeNotImplemented, flags: "qr"},
		{name: "QDCOUNT 0 is FORMERR", q: q("api.gslb.example.test.", dns.TypeA, dnstest.NoQuestion()),
			rcode: dns.RcodeFormatError, flags: "qr rd"},
		{name: "QDCOUNT 2 is FORMERR", q: q("api.gslb.example.test.", dns.TypeA, dnstest.Question("www.gslb.example.test.", dns.TypeA)),
			rcode: dns.RcodeFormatError, flags: "qr rd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, addr)
		})
	}
}

// TestPipelinedTCP writes ten queries on one connection before reading any
// answer: every one is answered, with its ID.
func TestPipelinedTCP(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	conn, err := dns.DialTimeout("tcp", addr, dnstest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * dnstest.Timeout)); err != nil {
		t.Fatal(err)
	}
	names := []string{"api", "www", "nope", "docs", "edge"}
	want := map[uint16]string{}
	for i := range 10 {
		m := q(names[i%len(names)]+".gslb.example.test.", dns.TypeA, dnstest.ID(uint16(1000+i)))
		want[m.Id] = m.Question[0].Name
		if err := conn.WriteMsg(m); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	for i := range 10 {
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		name, ok := want[r.Id]
		if !ok {
			t.Fatalf("answer %d has unknown or repeated id %d", i, r.Id)
		}
		if len(r.Question) != 1 || r.Question[0].Name != name {
			t.Errorf("answer for id %d: question %v, want %s", r.Id, r.Question, name)
		}
		delete(want, r.Id)
	}
}

// TestMalformedPackets sends junk over UDP and checks the server keeps
// answering.
func TestMalformedPackets(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	valid := [][]byte{
		dnstest.Pack(t, q("api.gslb.example.test.", dns.TypeA)),
		dnstest.Pack(t, q("docs.gslb.example.test.", dns.TypeA, dnstest.NSID())),
		dnstest.Pack(t, q("www.gslb.example.test.", dns.TypeANY, dnstest.ECS(netip.MustParsePrefix("198.51.100.0/24")))),
	}
	conn := dnstest.DialUDP(t, addr)
	for i := range 200 {
		var pkt []byte
		switch i % 4 {
		case 0: // random bytes
			pkt = make([]byte, rng.IntN(600))
			for j := range pkt {
				pkt[j] = byte(rng.Uint32())
			}
		case 1: // a valid query cut short
			v := valid[rng.IntN(len(valid))]
			pkt = v[:rng.IntN(len(v))]
		case 2: // a valid query with bytes flipped
			pkt = slices.Clone(valid[rng.IntN(len(valid))])
			for range 1 + rng.IntN(4) {
				pkt[rng.IntN(len(pkt))] = byte(rng.Uint32())
			}
		case 3: // a header claiming sections that are not there
			pkt = slices.Clone(valid[0][:12])
			binary.BigEndian.PutUint16(pkt[4:], uint16(rng.IntN(4)))
			binary.BigEndian.PutUint16(pkt[6:], uint16(rng.Uint32()))
			binary.BigEndian.PutUint16(pkt[10:], uint16(rng.IntN(3)))
			pkt = append(pkt, byte(rng.IntN(64)), 'a', 0xC0, byte(rng.Uint32()))
		}
		if _, err := conn.Write(pkt); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	r := dnstest.Exchange(t, addr, q("api.gslb.example.test.", dns.TypeA), "udp")
	dnstest.CheckSection(t, "answer", r.Answer, apiA)
	r = dnstest.Exchange(t, addr, q("api.gslb.example.test.", dns.TypeA), "tcp")
	dnstest.CheckSection(t, "answer", r.Answer, apiA)
}

// TestResponseNotAnswered sends a packet with QR set, then a query, on one
// socket (which the kernel pins to one server socket, answered in order):
// the first packet back must answer the query.
func TestResponseNotAnswered(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	conn := dnstest.DialUDP(t, addr)
	resp := q("api.gslb.example.test.", dns.TypeA, dnstest.ID(1))
	resp.Response = true
	for _, m := range []*dns.Msg{resp, q("api.gslb.example.test.", dns.TypeA, dnstest.ID(2))} {
		if _, err := conn.Write(dnstest.Pack(t, m)); err != nil {
			t.Fatal(err)
		}
	}
	pkt, ok := dnstest.ReadPacket(t, conn, dnstest.Timeout)
	if !ok {
		t.Fatal("no answer to the query")
	}
	if id := binary.BigEndian.Uint16(pkt); id != 2 {
		t.Fatalf("first packet back has id %d: the response (id 1) was answered", id)
	}
	if pkt, ok := dnstest.ReadPacket(t, conn, 100*time.Millisecond); ok {
		t.Errorf("unexpected extra packet with id %d", binary.BigEndian.Uint16(pkt))
	}
}

// TestUnparsableGetsFORMERR sends packets with a query header that do not
// parse: each gets FORMERR with its ID.
func TestUnparsableGetsFORMERR(t *testing.T) {
	t.Parallel()
	_, addr := startTest(t)
	header := func(id uint16, qd, an uint16) []byte {
		h := make([]byte, 12)
		binary.BigEndian.PutUint16(h, id)
		h[2] = 0x01 // RD
		binary.BigEndian.PutUint16(h[4:], qd)
		binary.BigEndian.PutUint16(h[6:], an)
		return h
	}
	cases := []struct {
		name string
		pkt  []byte
	}{
		{"label longer than the packet", append(header(0x1234, 1, 0), 5, 'a', 'b')},
		{"compression pointer loop", append(header(0x2345, 1, 0), 0xC0, 12, 0, 1, 0, 1)},
		{"pointer forward past the end", append(header(0x3456, 1, 0), 0xC0, 0xFF, 0, 1, 0, 1)},
		{"answer record cut short", append(header(0x4567, 1, 1), 3, 'a', 'p', 'i', 0, 0, 1, 0, 1, 0xC0, 12, 0, 1)},
		{"question without type", append(header(0x5678, 1, 0), 3, 'a', 'p', 'i', 0, 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := new(dns.Msg).Unpack(c.pkt); err == nil {
				t.Fatalf("test packet parses")
			}
			conn := dnstest.DialUDP(t, addr)
			if _, err := conn.Write(c.pkt); err != nil {
				t.Fatal(err)
			}
			pkt, ok := dnstest.ReadPacket(t, conn, dnstest.Timeout)
			if !ok {
				t.Fatal("no answer")
			}
			r := new(dns.Msg)
			if err := r.Unpack(pkt); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if r.Id != binary.BigEndian.Uint16(c.pkt) || r.Rcode != dns.RcodeFormatError || !r.Response || !r.RecursionDesired {
				t.Errorf("answer id %#x rcode %s flags [%s], want id %#x FORMERR [qr rd]", r.Id,
					dns.RcodeToString[r.Rcode], dnstest.Flags(r), binary.BigEndian.Uint16(c.pkt))
			}
		})
	}
	t.Run("shorter than a header", func(t *testing.T) {
		t.Parallel()
		conn := dnstest.DialUDP(t, addr)
		for _, m := range [][]byte{{0x12, 0x34, 0x01}, dnstest.Pack(t, q("api.gslb.example.test.", dns.TypeA, dnstest.ID(7)))} {
			if _, err := conn.Write(m); err != nil {
				t.Fatal(err)
			}
		}
		pkt, ok := dnstest.ReadPacket(t, conn, dnstest.Timeout)
		if !ok || binary.BigEndian.Uint16(pkt) != 7 {
			t.Errorf("first packet back = %x, want the answer to id 7", pkt)
		}
	})
}

// health is a resolver.Health from a function.
type health func(service, endpoint string) bool

func (h health) Up(service, endpoint string) bool { return h(service, endpoint) }

func (health) RTT(string, string, string) (time.Duration, bool) { return 0, false }

// downSet reports the endpoints named "service/endpoint" down, and every
// endpoint of a service named "service/*".
func downSet(names ...string) resolver.Health {
	down := map[string]bool{}
	for _, n := range names {
		down[n] = true
	}
	return health(func(s, e string) bool { return !down[s+"/"+e] && !down[s+"/*"] })
}

const policyConfig = `
[node]
name   = "test-node-1"
region = "us-east"

[regions.us-east]

[[zones]]
origin     = "p.example.test."
ttl        = 300
ns         = ["ns1.p.example.test."]
serial     = 7

[[services]]
name      = "open.p.example.test."
ttl       = 20
endpoints = [
  { name = "a", region = "us-east", address = "192.0.2.1" },
  { name = "b", region = "us-east", address = "192.0.2.2" },
]

[[services]]
name      = "closed.p.example.test."
ttl       = 20
fail_open = false
endpoints = [
  { name = "a", region = "us-east", address = "192.0.2.1" },
  { name = "b", region = "us-east", address = "192.0.2.2" },
]

[[services]]
name      = "zero.p.example.test."
ttl       = 20
endpoints = [
  { name = "spare", region = "us-east", address = "192.0.2.9", weight = 0 },
  { name = "main",  region = "us-east", address = "192.0.2.1", weight = 10 },
  { name = "main2", region = "us-east", address = "192.0.2.2", weight = 5 },
]

[[services]]
name      = "fo.p.example.test."
policy    = "failover"
ttl       = 20
endpoints = [
  { name = "p1a", region = "us-east", address = "192.0.2.11", priority = 1 },
  { name = "p1b", region = "us-east", address = "192.0.2.12", priority = 1 },
  { name = "p2",  region = "us-east", address = "192.0.2.21", priority = 2 },
  { name = "p3",  region = "us-east", address = "192.0.2.31", priority = 3 },
]

[[services]]
name        = "mv.p.example.test."
policy      = "multivalue"
ttl         = 20
max_answers = 3
endpoints   = [
  { name = "e1", region = "us-east", address = "192.0.2.1" },
  { name = "e2", region = "us-east", address = "192.0.2.2" },
  { name = "e3", region = "us-east", address = "192.0.2.3" },
  { name = "e4", region = "us-east", address = "192.0.2.4" },
  { name = "e5", region = "us-east", address = "192.0.2.5" },
]

[[services]]
name        = "wmulti.p.example.test."
ttl         = 20
max_answers = 2
endpoints   = [
  { name = "e1", region = "us-east", address = "192.0.2.1", weight = 100 },
  { name = "e2", region = "us-east", address = "192.0.2.2", weight = 1 },
  { name = "e3", region = "us-east", address = "192.0.2.3", weight = 1 },
]
`

const pSOA20 = "p.example.test. 20 IN SOA ns1.p.example.test. hostmaster.p.example.test. 7 3600 600 86400 300"

// answersOver asks for name's A records n times (alternating UDP and TCP)
// and returns every distinct answer section seen, as sorted addresses
// joined by spaces, with how often.
func answersOver(t *testing.T, addr, name string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := range n {
		r := dnstest.Exchange(t, addr, q(name, dns.TypeA), transports[i%2])
		if r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: rcode %s", name, dns.RcodeToString[r.Rcode])
		}
		var addrs []string
		for _, rr := range r.Answer {
			a, ok := rr.(*dns.A)
			if !ok {
				t.Fatalf("%s: answer %s is not an A record", name, rr)
			}
			addrs = append(addrs, a.A.String())
		}
		if len(addrs) != len(slices.Compact(slices.Sorted(slices.Values(addrs)))) {
			t.Errorf("%s: duplicate answers %v", name, addrs)
		}
		slices.Sort(addrs)
		seen[strings.Join(addrs, " ")]++
	}
	return seen
}

// keys returns the keys of m, sorted.
func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestPolicies sets a health snapshot and checks which answers a service
// gives over many queries: always within want, and (for checkAll) every
// one of want at least once.
func TestPolicies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		health   resolver.Health
		service  string
		want     []string // every answer section allowed
		checkAll bool     // each of want must be seen
	}{
		{"fail_open true answers any endpoint when all are down", downSet("open.p.example.test./*"),
			"open.p.example.test.", []string{"192.0.2.1", "192.0.2.2"}, true},
		{"fail_open default answers the up endpoint", downSet("open.p.example.test./a"),
			"open.p.example.test.", []string{"192.0.2.2"}, true},
		{"fail_open false with one up", downSet("closed.p.example.test./a"),
			"closed.p.example.test.", []string{"192.0.2.2"}, true},
		{"weight 0 is not answered while a positive weight is up", nil,
			"zero.p.example.test.", []string{"192.0.2.1", "192.0.2.2"}, true},
		{"weight 0 is not answered while one positive weight is up", downSet("zero.p.example.test./main"),
			"zero.p.example.test.", []string{"192.0.2.2"}, true},
		{"weight 0 is answered when every positive weight is down", downSet("zero.p.example.test./main", "zero.p.example.test./main2"),
			"zero.p.example.test.", []string{"192.0.2.9"}, true},
		{"weight 0 down too: fail open answers all by weight", downSet("zero.p.example.test./*"),
			"zero.p.example.test.", []string{"192.0.2.1", "192.0.2.2"}, true},
		{"failover answers the lowest priority", nil,
			"fo.p.example.test.", []string{"192.0.2.11", "192.0.2.12"}, true},
		{"failover stays in priority 1 while one is up", downSet("fo.p.example.test./p1a"),
			"fo.p.example.test.", []string{"192.0.2.12"}, true},
		{"failover moves to priority 2", downSet("fo.p.example.test./p1a", "fo.p.example.test./p1b"),
			"fo.p.example.test.", []string{"192.0.2.21"}, true},
		{"failover moves to priority 3", downSet("fo.p.example.test./p1a", "fo.p.example.test./p1b", "fo.p.example.test./p2"),
			"fo.p.example.test.", []string{"192.0.2.31"}, true},
		{"failover back to priority 1 when only it is up", downSet("fo.p.example.test./p2", "fo.p.example.test./p3"),
			"fo.p.example.test.", []string{"192.0.2.11", "192.0.2.12"}, true},
		{"failover all down fails open to priority 1", downSet("fo.p.example.test./*"),
			"fo.p.example.test.", []string{"192.0.2.11", "192.0.2.12"}, true},
		{"multivalue answers max_answers distinct up endpoints", downSet("mv.p.example.test./e1", "mv.p.example.test./e2"),
			"mv.p.example.test.", []string{"192.0.2.3 192.0.2.4 192.0.2.5"}, true},
		{"multivalue answers fewer when fewer are up", downSet("mv.p.example.test./e1", "mv.p.example.test./e2", "mv.p.example.test./e3"),
			"mv.p.example.test.", []string{"192.0.2.4 192.0.2.5"}, true},
		{"weighted max_answers 2 draws without replacement", nil,
			"wmulti.p.example.test.", []string{"192.0.2.1 192.0.2.2", "192.0.2.1 192.0.2.3", "192.0.2.2 192.0.2.3"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv, addr := dnstest.StartServer(t, policyConfig)
			if c.health != nil {
				if err := srv.SetHealth(c.health); err != nil {
					t.Fatal(err)
				}
			}
			seen := answersOver(t, addr, c.service, 60)
			for _, s := range keys(seen) {
				if !slices.Contains(c.want, s) {
					t.Errorf("answered [%s] (%d times); allowed: %q", s, seen[s], c.want)
				}
			}
			if c.checkAll {
				for _, w := range c.want {
					if seen[w] == 0 {
						t.Errorf("never answered [%s] in 60 queries; saw %v", w, seen)
					}
				}
			}
		})
	}
}

// TestMultivalueAllUp checks that multivalue answers max_answers distinct
// endpoints, and every endpoint is drawn over time.
func TestMultivalueAllUp(t *testing.T) {
	t.Parallel()
	_, addr := dnstest.StartServer(t, policyConfig)
	seen := map[string]bool{}
	for set := range answersOver(t, addr, "mv.p.example.test.", 60) {
		addrs := strings.Fields(set)
		if len(addrs) != 3 {
			t.Errorf("answer [%s]: want 3 endpoints", set)
		}
		for _, a := range addrs {
			seen[a] = true
		}
	}
	if len(seen) != 5 {
		t.Errorf("endpoints seen in 60 answers: %v, want all 5", seen)
	}
}

// TestFailClosed checks that a fail_open = false service with every
// endpoint down answers NODATA with an SOA no older than the service TTL.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	srv, addr := dnstest.StartServer(t, policyConfig)
	if err := srv.SetHealth(downSet("closed.p.example.test./*")); err != nil {
		t.Fatal(err)
	}
	c := dnsCase{name: "closed", q: q("closed.p.example.test.", dns.TypeA), flags: "qr aa rd", ns: []string{pSOA20}}
	for _, proto := range transports {
		m := c.q.Copy()
		c.check(t, m, dnstest.Exchange(t, addr, m, proto))
	}
	// Back up: answered again.
	if err := srv.SetHealth(resolver.AllUp{}); err != nil {
		t.Fatal(err)
	}
	r := dnstest.Exchange(t, addr, q("closed.p.example.test.", dns.TypeA), "udp")
	if len(r.Answer) != 1 {
		t.Errorf("after recovery: answer %v, want one endpoint", r.Answer)
	}
}

// TestSwapUnderLoad flips health and configuration while clients query:
// a service that always has an endpoint up never answers empty or fails.
func TestSwapUnderLoad(t *testing.T) {
	t.Parallel()
	files := map[string]string{"gslb.zone": testZone}
	srv, addr := dnstest.StartServerFiles(t, testConfig, files)
	cfgs := []*config.Config{
		dnstest.Config(t, testConfig, files),
		dnstest.Config(t, strings.Replace(testConfig, `address = "192.0.2.10"`, `address = "192.0.2.110"`, 1), files),
	}
	healths := []resolver.Health{
		resolver.AllUp{},
		downSet("dual.gslb.example.test./v4", "many.gslb.example.test./e1"),
		downSet("many.gslb.example.test./*"), // fails open
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var swaps sync.WaitGroup
	swaps.Go(func() {
		for i := 0; ctx.Err() == nil && i < 100_000; i++ {
			var err error
			if i%3 == 0 {
				err = srv.Update(cfgs[i%len(cfgs)])
			} else {
				err = srv.SetHealth(healths[i%len(healths)])
			}
			if err != nil {
				t.Errorf("swap %d: %v", i, err)
				return
			}
		}
	})
	const clients, perClient = 4, 500 // 2000 queries
	names := []struct {
		name  string
		qtype uint16
	}{
		{"api.gslb.example.test.", dns.TypeA},
		{"dual.gslb.example.test.", dns.TypeAAAA},
		{"many.gslb.example.test.", dns.TypeAAAA},
		{"edge.gslb.example.test.", dns.TypeA},
	}
	errs := make(chan error, clients)
	var queries sync.WaitGroup
	for c := range clients {
		queries.Go(func() {
			for i := range perClient {
				n := names[(c+i)%len(names)]
				proto := "udp"
				if i%10 == 0 {
					proto = "tcp"
				}
				m := q(n.name, n.qtype, dnstest.EDNS(4096))
				r, err := dnstest.ExchangeErr(addr, m, proto)
				if err == nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0) {
					err = fmt.Errorf("rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
				}
				if err != nil {
					errs <- fmt.Errorf("client %d query %d (%s %s over %s): %w", c, i, n.name, dns.TypeToString[n.qtype], proto, err)
					return
				}
			}
		})
	}
	queries.Wait()
	cancel()
	swaps.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestApexService checks that a service at a zone apex leaves the apex's
// SOA and NS answerable.
func TestApexService(t *testing.T) {
	t.Parallel()
	_, addr := dnstest.StartServer(t, `
[node]
name   = "test-node-1"
region = "us-east"

[regions.us-east]

[[zones]]
origin = "apex.example.test."
ttl    = 300
ns     = ["ns1.apex.example.test."]
serial = 9

[[services]]
name      = "apex.example.test."
ttl       = 20
endpoints = [{ name = "a", region = "us-east", address = "192.0.2.1" }]
`)
	soa := "apex.example.test. 300 IN SOA ns1.apex.example.test. hostmaster.apex.example.test. 9 3600 600 86400 300"
	cases := []dnsCase{
		{name: "A", q: q("apex.example.test.", dns.TypeA), flags: "qr aa rd",
			answer: []string{"apex.example.test. 20 IN A 192.0.2.1"}},
		{name: "SOA", q: q("apex.example.test.", dns.TypeSOA), flags: "qr aa rd", answer: []string{soa}},
		{name: "NS", q: q("apex.example.test.", dns.TypeNS), flags: "qr aa rd",
			answer: []string{"apex.example.test. 300 IN NS ns1.apex.example.test."}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, addr)
		})
	}
}

// TestCNAMENegative checks the rcode and authority of a CNAME chain that
// ends in no data (RFC 2308 §2.1, §2.2; RFC 6604 §3: the rcode and the
// negative answer are those of the last name in the chain), and a loop.
func TestCNAMENegative(t *testing.T) {
	t.Parallel()
	_, addr := dnstest.StartServerFiles(t, testConfig, map[string]string{"gslb.zone": testZone + `
dangling IN CNAME missing
loop1    IN CNAME loop2
loop2    IN CNAME loop1
`})
	cases := []dnsCase{
		{name: "chain to a name without the type is NODATA with the SOA", q: q("docs.gslb.example.test.", dns.TypeMX),
			flags: "qr aa rd", answer: []string{"docs.gslb.example.test. 300 IN CNAME www.gslb.example.test."},
			ns: []string{soa300}},
		{name: "chain to a missing in-zone name is NXDOMAIN with the SOA", q: q("dangling.gslb.example.test.", dns.TypeA),
			rcode: dns.RcodeNameError, flags: "qr aa rd",
			answer: []string{"dangling.gslb.example.test. 300 IN CNAME missing.gslb.example.test."}, ns: []string{soa300}},
		{name: "a CNAME loop answers each CNAME once", q: q("loop1.gslb.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"loop1.gslb.example.test. 300 IN CNAME loop2.gslb.example.test.",
				"loop2.gslb.example.test. 300 IN CNAME loop1.gslb.example.test."}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, addr)
		})
	}
}

// TestRunStopsAtOnce cancels Run as soon as it has started: Run must
// return, every time.
func TestRunStopsAtOnce(t *testing.T) {
	t.Parallel()
	cfg := dnstest.Config(t, policyConfig, nil)
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.DNS.UDPSockets = 1
	for i := range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := resolver.New(cfg, resolver.Options{Started: cancel})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		case <-time.After(5 * dnstest.Timeout):
			t.Fatalf("run %d: Run did not return within %s of its context ending", i, 5*dnstest.Timeout)
		}
		cancel()
	}
}
